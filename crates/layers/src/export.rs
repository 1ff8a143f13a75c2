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

/// The graph being built: nodes in execution order and named constants.
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
    made: usize,
}

impl Graph {
    /// A fresh value name starting with `hint`.
    fn fresh(&mut self, hint: &str) -> String {
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
        let output = self.fresh(&format!("{layer}/{op}"));
        self.nodes.push(Node {
            op: op.to_string(),
            name: output.clone(),
            inputs: inputs.to_vec(),
            outputs: vec![output.clone()],
            attributes: attributes
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        });
        output
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
        let names: Vec<String> = (0..outputs)
            .map(|_| self.fresh(&format!("{layer}/{op}")))
            .collect();
        self.nodes.push(Node {
            op: op.to_string(),
            name: names[0].clone(),
            inputs: inputs.to_vec(),
            outputs: names.clone(),
            attributes: attributes
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
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
