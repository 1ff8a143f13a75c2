//! Export of a trained polyhead model to ONNX, for serving it elsewhere
//! (onnxruntime, tract, TensorRT...): one graph (opset 17) with one input
//! `input` whose first dimension is a symbolic `batch`, and one output per
//! head, named after the head. Only inference is exported (dropout off,
//! batch normalization on its moving statistics); losses are not.
//!
//! The model describes its own graph ([`MultiOutput::export_graph`], which
//! the derive writes for a trunk-and-heads model; each layer's
//! [`Module::export`](polyhead::layers::Module::export)); this crate turns
//! that graph into ONNX's protobuf messages (tract-onnx's `pb` types,
//! encoded by `prost`). Every polyhead layer exports (dense, activations,
//! normalizations, embedding, convolutions including transposed and
//! depthwise, pooling, LSTM/GRU/bidirectional as ONNX's recurrent
//! operators, multi-head self-attention; after an embedding's `mask_zero`,
//! each recurrence as a `Scan` that skips padded steps); what cannot be (a
//! layer of your own without
//! [`Module::export`](polyhead::layers::Module::export); a model with its
//! own forward) is an error naming it, and nothing is written.
//!
//! ```
//! use polyhead::prelude::*;
//! #[derive(MultiOutput)]
//! struct Net {
//!     #[trunk]
//!     body: Dense,
//!     #[head(loss = SparseCrossEntropy::from_logits(), target = Labels)]
//!     class: Dense,
//!     #[head(loss = Mse::new())]
//!     bbox: Dense,
//! }
//! let mut rng = Rng::new(0);
//! let net = Net {
//!     body: Dense::builder(4, 8).activation(Activation::Relu).build(&mut rng)?,
//!     class: Dense::new(8, 3, &mut rng)?,
//!     bbox: Dense::new(8, 4, &mut rng)?,
//! };
//! let path = std::env::temp_dir().join(format!("polyhead-doc-{}.onnx", std::process::id()));
//! polyhead_onnx::export_onnx(&net, &[4], &path)?;
//! let model = polyhead_onnx::model_proto(&net, &[4])?;
//! let outputs: Vec<&str> = model.graph.as_ref().unwrap().output.iter().map(|o| o.name.as_str()).collect();
//! assert_eq!(outputs, ["class", "bbox"]);
//! # std::fs::remove_file(&path)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::Path;

use polyhead::layers::export::{Attribute, Constant, ElementType, Graph, Subgraph};
use polyhead::tensor::Float;
use polyhead::{Error, MultiOutput, Result};
use tract_onnx::pb;

/// The ONNX operator set the graph uses.
///
/// ```
/// assert_eq!(polyhead_onnx::OPSET, 17);
/// ```
pub const OPSET: i64 = 17;

/// The graph input's name.
///
/// ```
/// assert_eq!(polyhead_onnx::INPUT, "input");
/// ```
pub const INPUT: &str = "input";

/// ONNX's element type codes (`TensorProto.DataType`).
const FLOAT: i32 = 1;
const BOOL: i32 = 9;
const INT64: i32 = 7;

/// `model`'s inference graph as an ONNX `ModelProto`, for inputs of one
/// sample's shape `input_shape` (the batch dimension is added, symbolic).
///
/// ```
/// use polyhead::prelude::*;
/// #[derive(MultiOutput)]
/// struct Net {
///     #[head(loss = Mse::new())]
///     out: Dense,
/// }
/// let net = Net { out: Dense::new(3, 1, &mut Rng::new(0))? };
/// let model = polyhead_onnx::model_proto(&net, &[3])?;
/// assert_eq!(model.opset_import[0].version, polyhead_onnx::OPSET);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn model_proto<M, T>(model: &M, input_shape: &[usize]) -> Result<pb::ModelProto>
where
    M: MultiOutput<T>,
    T: Float,
{
    if let Some(head) = M::HEADS.iter().find(|h| **h == INPUT) {
        return Err(Error::Invalid(format!(
            "export: a head named `{head}` would clash with the graph input `{INPUT}`"
        )));
    }
    let mut graph = Graph::default();
    let heads = model.export_graph(&mut graph, INPUT)?;
    let mut nodes: Vec<pb::NodeProto> = graph.nodes().iter().map(node).collect();
    // Each head's value leaves the graph under the head's name.
    for (head, value) in &heads {
        nodes.push(pb::NodeProto {
            op_type: "Identity".into(),
            name: format!("{head}/output"),
            input: vec![value.clone()],
            output: vec![head.to_string()],
            ..Default::default()
        });
    }
    let mut dims = vec![pb::tensor_shape_proto::Dimension {
        value: Some(pb::tensor_shape_proto::dimension::Value::DimParam(
            "batch".into(),
        )),
        ..Default::default()
    }];
    dims.extend(
        input_shape
            .iter()
            .map(|&d| pb::tensor_shape_proto::Dimension {
                value: Some(pb::tensor_shape_proto::dimension::Value::DimValue(d as i64)),
                ..Default::default()
            }),
    );
    let value_info = |name: &str, dims| tensor_value_info(name, FLOAT, dims);
    Ok(pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "polyhead".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(pb::GraphProto {
            name: std::any::type_name::<M>()
                .rsplit("::")
                .next()
                .unwrap_or("model")
                .to_string(),
            node: nodes,
            initializer: graph.constants().iter().map(initializer).collect(),
            input: vec![value_info(INPUT, Some(dims))],
            output: heads
                .iter()
                .map(|(head, _)| value_info(head, None))
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// [`model_proto`] encoded as ONNX file bytes.
///
/// ```
/// use polyhead::prelude::*;
/// #[derive(MultiOutput)]
/// struct Net {
///     #[head(loss = Mse::new())]
///     out: Dense,
/// }
/// let net = Net { out: Dense::new(3, 1, &mut Rng::new(0))? };
/// assert!(!polyhead_onnx::to_bytes(&net, &[3])?.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn to_bytes<M, T>(model: &M, input_shape: &[usize]) -> Result<Vec<u8>>
where
    M: MultiOutput<T>,
    T: Float,
{
    Ok(prost::Message::encode_to_vec(&model_proto(
        model,
        input_shape,
    )?))
}

/// Writes `model` as an ONNX file at `path` (a temporary file renamed into
/// place, so an existing file is replaced whole or not at all). What
/// cannot be exported is an error naming the layer, and nothing is
/// written.
///
/// ```
/// use polyhead::prelude::*;
/// use polyhead::layers::Module;
/// struct Doubling; // a layer of one's own, without `Module::export`
/// impl Module<f32> for Doubling {
///     fn forward<'t>(&self, x: Var<'t, f32>) -> polyhead::layers::Result<Var<'t, f32>> { Ok(x.scale(2.0)) }
///     fn visit_parameters<'a>(&'a self, _: &str, _: &mut dyn FnMut(String, &'a Parameter<f32>)) {}
///     fn visit_parameters_mut<'a>(&'a mut self, _: &str, _: &mut dyn FnMut(String, &'a mut Parameter<f32>)) {}
/// }
/// #[derive(MultiOutput)]
/// struct Net {
///     #[trunk]
///     twice: Doubling,
///     #[head(loss = Mse::new())]
///     out: Dense,
/// }
/// let net = Net { twice: Doubling, out: Dense::new(4, 1, &mut Rng::new(0))? };
/// let path = std::env::temp_dir().join("polyhead-doc-never-written.onnx");
/// let err = polyhead_onnx::export_onnx(&net, &[4], &path).unwrap_err();
/// assert_eq!(err.to_string(), "twice (Doubling): cannot be exported: polyhead has no export for this layer yet");
/// assert!(!path.exists());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn export_onnx<M, T>(model: &M, input_shape: &[usize], path: impl AsRef<Path>) -> Result<()>
where
    M: MultiOutput<T>,
    T: Float,
{
    let path = path.as_ref();
    let bytes = to_bytes(model, input_shape)?;
    let fail = |e: std::io::Error| Error::File {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let tmp = path.with_extension("onnx.partial");
    std::fs::write(&tmp, &bytes).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}

fn node(n: &polyhead::layers::export::Node) -> pb::NodeProto {
    pb::NodeProto {
        op_type: n.op.clone(),
        name: n.name.clone(),
        input: n.inputs.clone(),
        output: n.outputs.clone(),
        attribute: n
            .attributes
            .iter()
            .map(|(name, value)| attribute(name, value))
            .collect(),
        ..Default::default()
    }
}

fn attribute(name: &str, value: &Attribute) -> pb::AttributeProto {
    use pb::attribute_proto::AttributeType;
    let mut a = pb::AttributeProto {
        name: name.to_string(),
        ..Default::default()
    };
    match value {
        Attribute::Int(i) => {
            a.r#type = AttributeType::Int as i32;
            a.i = *i;
        }
        Attribute::Ints(v) => {
            a.r#type = AttributeType::Ints as i32;
            a.ints = v.clone();
        }
        Attribute::Float(f) => {
            a.r#type = AttributeType::Float as i32;
            a.f = *f;
        }
        Attribute::String(s) => {
            a.r#type = AttributeType::String as i32;
            a.s = s.as_bytes().to_vec();
        }
        Attribute::Graph(body) => {
            a.r#type = AttributeType::Graph as i32;
            a.g = Some(subgraph(name, body));
        }
    }
    a
}

/// An operator's body as a `GraphProto`: its nodes, its constants as
/// initializers, its inputs and outputs declared with their element types.
fn subgraph(name: &str, body: &Subgraph) -> pb::GraphProto {
    let declared = |(value, kind): &(String, ElementType)| {
        let elem_type = match kind {
            ElementType::Float => FLOAT,
            ElementType::Bool => BOOL,
        };
        tensor_value_info(value, elem_type, None)
    };
    pb::GraphProto {
        name: name.to_string(),
        node: body.graph.nodes().iter().map(node).collect(),
        initializer: body.graph.constants().iter().map(initializer).collect(),
        input: body.inputs.iter().map(declared).collect(),
        output: body.outputs.iter().map(declared).collect(),
        ..Default::default()
    }
}

/// A value's declaration: name, element type and, if known, dimensions.
fn tensor_value_info(
    name: &str,
    elem_type: i32,
    dims: Option<Vec<pb::tensor_shape_proto::Dimension>>,
) -> pb::ValueInfoProto {
    pb::ValueInfoProto {
        name: name.to_string(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type,
                shape: dims.map(|dim| pb::TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn initializer((name, value): &(String, Constant)) -> pb::TensorProto {
    match value {
        Constant::Float(shape, values) => pb::TensorProto {
            name: name.clone(),
            dims: shape.iter().map(|&d| d as i64).collect(),
            data_type: FLOAT,
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        },
        Constant::Int(shape, values) => pb::TensorProto {
            name: name.clone(),
            dims: shape.iter().map(|&d| d as i64).collect(),
            data_type: INT64,
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        },
    }
}
