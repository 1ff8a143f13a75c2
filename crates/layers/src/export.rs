//! A model's inference graph, for export: nodes named after ONNX operators
//! (opset 17) with their attributes, and constant tensors, independent of
//! any file format. A layer describes its own inference computation with
//! [`Module::export`](crate::Module::export); the `polyhead-onnx` crate
//! writes the graph as an ONNX model.
//!
//! Values are named strings; layouts are polyhead's (channels last), so a
//! convolution transposes to ONNX's channels-first and back around its
//! node.

use polyhead_tensor::{Float, Tensor};

/// ONNX's padding attributes for `padding` over `rank` spatial axes
/// (`pads` or `auto_pad`), or `None` for causal padding, which depends on
/// the window (the caller's to spell out).
pub(crate) fn padding_attributes(
    padding: crate::Padding,
    rank: usize,
) -> Option<(&'static str, Attribute)> {
    Some(match padding {
        crate::Padding::Valid => ("pads", Attribute::Ints(vec![0; 2 * rank])),
        crate::Padding::Same => ("auto_pad", Attribute::String("SAME_UPPER".into())),
        crate::Padding::Explicit(p) => ("pads", Attribute::Ints(vec![p as i64; 2 * rank])),
        crate::Padding::Causal => return None,
    })
}

/// `y * gamma + beta` over the last axis, each factor only if present (a
/// normalization's scale and offset).
pub(crate) fn scale_and_shift<T: Float>(
    g: &mut Graph,
    name: &str,
    y: String,
    gamma: Option<&polyhead_autograd::Parameter<T>>,
    beta: Option<&polyhead_autograd::Parameter<T>>,
) -> String {
    let mut y = y;
    if let Some(gamma) = gamma {
        let gamma = g.constant(&format!("{name}.gamma"), gamma.value());
        y = g.op(name, "Mul", &[y, gamma], vec![]);
    }
    if let Some(beta) = beta {
        let beta = g.constant(&format!("{name}.beta"), beta.value());
        y = g.op(name, "Add", &[y, beta], vec![]);
    }
    y
}

/// An operator attribute.
///
/// ```
/// use polyhead_layers::export::{Attribute, Graph};
/// let mut g = Graph::default();
/// g.op("softmax", "Softmax", &["x".into()], vec![("axis", Attribute::Int(-1))]);
/// assert_eq!(g.nodes()[0].attributes[0], ("axis".to_string(), Attribute::Int(-1)));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Attribute {
    /// An integer.
    Int(i64),
    /// A list of integers.
    Ints(Vec<i64>),
    /// A float.
    Float(f32),
    /// A string.
    String(String),
    /// A graph (the body of ONNX `Scan`).
    Graph(Box<Subgraph>),
}

/// A value's element type, where a graph declares it (a subgraph's inputs
/// and outputs).
///
/// ```
/// use polyhead_layers::export::ElementType;
/// assert_ne!(ElementType::Float, ElementType::Bool);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementType {
    /// float32.
    Float,
    /// A boolean (a mask).
    Bool,
}

/// A graph that is an operator's attribute (ONNX `Scan`'s `body`): its
/// nodes and constants, and its declared inputs and outputs in order.
///
/// ```
/// use polyhead_layers::export::{Attribute, ElementType, Graph, Subgraph};
/// let mut g = Graph::default();
/// let mut body = g.nested();
/// let y = body.op("step", "Neg", &["x".into()], vec![]);
/// let body = Subgraph { inputs: vec![("x".into(), ElementType::Float)], outputs: vec![(y, ElementType::Float)], graph: body };
/// g.op_outputs("loop", "Scan", &["xs".into()], vec![("body", Attribute::Graph(Box::new(body)))], 1);
/// assert_eq!(g.nodes()[0].op, "Scan");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Subgraph {
    /// Its nodes and constants.
    pub graph: Graph,
    /// The values it takes, in order.
    pub inputs: Vec<(String, ElementType)>,
    /// The values it gives, in order.
    pub outputs: Vec<(String, ElementType)>,
}

/// One operator application: `op` (an ONNX operator name) on `inputs`,
/// giving `outputs`.
///
/// ```
/// use polyhead_layers::export::Graph;
/// let mut g = Graph::default();
/// let y = g.op("act", "Tanh", &["x".into()], vec![]);
/// let node = &g.nodes()[0];
/// assert_eq!((node.op.as_str(), node.inputs.clone(), node.outputs.clone()), ("Tanh", vec!["x".to_string()], vec![y]));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The operator, e.g. `MatMul`.
    pub op: String,
    /// A unique name.
    pub name: String,
    /// The values it reads.
    pub inputs: Vec<String>,
    /// The values it makes.
    pub outputs: Vec<String>,
    /// Its attributes.
    pub attributes: Vec<(String, Attribute)>,
}

/// A constant: float32 values (a model's weights), or int64 ones (shapes,
/// indices).
///
/// ```
/// use polyhead_layers::export::{Constant, Graph};
/// let mut g = Graph::default();
/// g.int_constant("shape", &[0, -1]);
/// assert_eq!(g.constants()[0].1, Constant::Int(vec![2], vec![0, -1]));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Constant {
    /// float32 values and their shape.
    Float(Vec<usize>, Vec<f32>),
    /// int64 values and their shape.
    Int(Vec<usize>, Vec<i64>),
}

/// The graph being built: nodes in execution order and named constants,
/// and which values carry a mask (a sequence's real steps, as
/// `Var::with_mask` carries it in a forward pass).
///
/// ```
/// use polyhead_layers::export::Graph;
/// let mut g = Graph::default();
/// let y = g.op("dense", "Relu", &["x".to_string()], vec![]);
/// assert_eq!(g.nodes()[0].op, "Relu");
/// assert_eq!(g.nodes()[0].outputs, vec![y]);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Graph {
    nodes: Vec<Node>,
    constants: Vec<(String, Constant)>,
    masks: Vec<(String, String)>,
    made: usize,
}

impl Graph {
    /// A fresh value name starting with `hint`.
    pub(crate) fn fresh(&mut self, hint: &str) -> String {
        self.made += 1;
        let hint = if hint.is_empty() { "value" } else { hint };
        format!("{hint}/{}", self.made)
    }

    /// Adds node `op` on `inputs` with `attributes`; returns its one
    /// output's name (`layer` names the layer, for readable names).
    ///
    /// ```
    /// use polyhead_layers::export::{Attribute, Graph};
    /// let mut g = Graph::default();
    /// let y = g.op("pool", "ReduceMean", &["x".into()], vec![("axes", Attribute::Ints(vec![1, 2]))]);
    /// assert!(y.starts_with("pool/ReduceMean"));
    /// ```
    pub fn op(
        &mut self,
        layer: &str,
        op: &str,
        inputs: &[String],
        attributes: Vec<(&str, Attribute)>,
    ) -> String {
        self.op_outputs(layer, op, inputs, attributes, 1).remove(0)
    }

    /// Adds node `op` with `outputs` outputs (LSTM's `Y`, `Y_h`, `Y_c`);
    /// returns their names.
    ///
    /// ```
    /// use polyhead_layers::export::Graph;
    /// let mut g = Graph::default();
    /// let outs = g.op_outputs("encoder", "GRU", &["x".into()], vec![], 2);
    /// assert_eq!(g.nodes()[0].outputs, outs);
    /// ```
    pub fn op_outputs(
        &mut self,
        layer: &str,
        op: &str,
        inputs: &[String],
        attributes: Vec<(&str, Attribute)>,
        outputs: usize,
    ) -> Vec<String> {
        let attributes: Vec<(String, Attribute)> = attributes
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        // A body's names continue this graph's numbering: move past them.
        for (_, a) in &attributes {
            if let Attribute::Graph(body) = a {
                self.made = self.made.max(body.graph.made);
            }
        }
        let names: Vec<String> = (0..outputs)
            .map(|_| self.fresh(&format!("{layer}/{op}")))
            .collect();
        self.nodes.push(Node {
            op: op.to_string(),
            name: names[0].clone(),
            inputs: inputs.to_vec(),
            outputs: names.clone(),
            attributes,
        });
        names
    }

    /// Adds a float constant (converted to float32) named after `name`.
    ///
    /// ```
    /// use polyhead_layers::export::{Constant, Graph};
    /// use polyhead_tensor::Tensor;
    /// let mut g = Graph::default();
    /// let k = g.constant("dense.kernel", &Tensor::<f64>::ones(&[2, 3])?);
    /// assert_eq!(g.constants()[0], (k, Constant::Float(vec![2, 3], vec![1.0; 6])));
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn constant<T: Float>(&mut self, name: &str, value: &Tensor<T>) -> String {
        let name = self.fresh(name);
        let values = value.to_vec().iter().map(|v| v.to_f64() as f32).collect();
        self.constants.push((
            name.clone(),
            Constant::Float(value.shape().to_vec(), values),
        ));
        name
    }

    /// Adds an int64 constant (a shape, axes, indices).
    ///
    /// ```
    /// use polyhead_layers::export::Graph;
    /// let mut g = Graph::default();
    /// let shape = g.int_constant("flatten.shape", &[0, -1]);
    /// # let _ = shape;
    /// ```
    pub fn int_constant(&mut self, name: &str, values: &[i64]) -> String {
        let name = self.fresh(name);
        self.constants.push((
            name.clone(),
            Constant::Int(vec![values.len()], values.to_vec()),
        ));
        name
    }

    /// `x` with its axes permuted (ONNX `Transpose`).
    ///
    /// ```
    /// use polyhead_layers::export::Graph;
    /// let mut g = Graph::default();
    /// g.transpose("conv", "x", &[0, 3, 1, 2]);
    /// assert_eq!(g.nodes()[0].op, "Transpose");
    /// ```
    pub fn transpose(&mut self, layer: &str, x: &str, perm: &[i64]) -> String {
        self.op(
            layer,
            "Transpose",
            &[x.to_string()],
            vec![("perm", Attribute::Ints(perm.to_vec()))],
        )
    }

    /// An empty graph for an operator's body whose value names continue
    /// this one's numbering (and adding the operator carries the numbering
    /// back), so that no name is made twice.
    ///
    /// ```
    /// use polyhead_layers::export::Graph;
    /// let mut g = Graph::default();
    /// let outer = g.op("a", "Neg", &["x".into()], vec![]);
    /// let inner = g.nested().op("a", "Neg", &["x".into()], vec![]);
    /// assert_ne!(outer, inner);
    /// ```
    pub fn nested(&self) -> Graph {
        Graph {
            made: self.made,
            ..Graph::default()
        }
    }

    /// Records that `value` carries `mask`: a boolean `[B, T]` value, true
    /// at a sequence's real steps (an embedding's `mask_zero` makes one).
    ///
    /// ```
    /// use polyhead_layers::export::Graph;
    /// let mut g = Graph::default();
    /// g.set_mask("embedded", "mask".into());
    /// assert_eq!(g.mask("embedded").as_deref(), Some("mask"));
    /// assert_eq!(g.mask("input"), None);
    /// ```
    pub fn set_mask(&mut self, value: &str, mask: String) {
        self.masks.push((value.to_string(), mask));
    }

    /// The mask `value` carries, if any.
    ///
    /// ```
    /// assert_eq!(polyhead_layers::export::Graph::default().mask("x"), None);
    /// ```
    pub fn mask(&self, value: &str) -> Option<String> {
        self.masks
            .iter()
            .find(|(v, _)| v == value)
            .map(|(_, m)| m.clone())
    }

    /// `to` carries `from`'s mask, if it has one (a layer keeping the time
    /// axis passes it on, as [`pass_mask`](crate::pass_mask) does in a
    /// forward pass).
    ///
    /// ```
    /// use polyhead_layers::export::Graph;
    /// let mut g = Graph::default();
    /// g.set_mask("x", "mask".into());
    /// g.pass_mask("x", "y");
    /// assert_eq!(g.mask("y").as_deref(), Some("mask"));
    /// ```
    pub fn pass_mask(&mut self, from: &str, to: &str) {
        if let Some(mask) = self.mask(from) {
            self.set_mask(to, mask);
        }
    }

    /// The nodes, in execution order.
    ///
    /// ```
    /// assert!(polyhead_layers::export::Graph::default().nodes().is_empty());
    /// ```
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The constants, by name.
    ///
    /// ```
    /// assert!(polyhead_layers::export::Graph::default().constants().is_empty());
    /// ```
    pub fn constants(&self) -> &[(String, Constant)] {
        &self.constants
    }
}
