///One value per head of [`DigitLocator`] (its outputs, or anything else kept per head), in field order.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DigitLocatorOutputs<V> {
    pub class: V,
    pub bbox: V,
    pub embedding: V,
}
impl<V> DigitLocatorOutputs<V> {
    /// The heads' names, in field order.
    pub const NAMES: [&'static str; 3usize] = ["class", "bbox", "embedding"];
    /// The values as a tuple, in field order.
    pub fn into_tuple(self) -> (V, V, V) {
        (self.class, self.bbox, self.embedding)
    }
    /// Applies `f` to each head's name and value.
    pub fn map<U>(
        self,
        mut f: impl ::core::ops::FnMut(&'static str, V) -> U,
    ) -> DigitLocatorOutputs<U> {
        DigitLocatorOutputs {
            class: f("class", self.class),
            bbox: f("bbox", self.bbox),
            embedding: f("embedding", self.embedding),
        }
    }
    /// References to the values, as (name, value) pairs in field order.
    pub fn iter(&self) -> ::core::array::IntoIter<(&'static str, &V), 3usize> {
        [("class", &self.class), ("bbox", &self.bbox), ("embedding", &self.embedding)]
            .into_iter()
    }
}
impl<V> ::core::convert::From<DigitLocatorOutputs<V>> for (V, V, V) {
    fn from(outputs: DigitLocatorOutputs<V>) -> Self {
        outputs.into_tuple()
    }
}
impl<V> ::core::iter::IntoIterator for DigitLocatorOutputs<V> {
    type Item = (&'static str, V);
    type IntoIter = ::core::array::IntoIter<(&'static str, V), 3usize>;
    fn into_iter(self) -> Self::IntoIter {
        [("class", self.class), ("bbox", self.bbox), ("embedding", self.embedding)]
            .into_iter()
    }
}
///The targets of [`DigitLocator`]'s heads that have a loss, with optional per-head sample weights and masks.
pub struct DigitLocatorTargets<T: ::polyhead::tensor::Float> {
    ///The target of head `class`.
    pub class: ::polyhead::tensor::Tensor<T>,
    ///The target of head `bbox`.
    pub bbox: ::polyhead::tensor::Tensor<T>,
    /// Per-head sample weights (heads without a loss ignore theirs).
    pub sample_weights: DigitLocatorOutputs<
        ::core::option::Option<::polyhead::tensor::Tensor<T>>,
    >,
    /// Per-head 0/1 masks, one per sample (heads without a loss ignore theirs).
    pub masks: DigitLocatorOutputs<
        ::core::option::Option<::polyhead::tensor::Tensor<T>>,
    >,
}
impl<T: ::polyhead::tensor::Float> ::polyhead::TargetSet<T> for DigitLocatorTargets<T>
where
    ::polyhead::tensor::Tensor<T>: ::polyhead::Target<T>,
    ::polyhead::tensor::Tensor<T>: ::polyhead::Target<T>,
{
    fn rows(&self) -> ::polyhead::Result<usize> {
        ::polyhead::__private::common_rows(
            &[
                ("class", ::polyhead::Target::<T>::rows(&self.class)),
                ("bbox", ::polyhead::Target::<T>::rows(&self.bbox)),
            ],
        )
    }
    fn select_rows(&self, rows: &[usize]) -> ::polyhead::Result<Self> {
        ::core::result::Result::Ok(DigitLocatorTargets {
            class: ::polyhead::Target::<T>::select_rows(&self.class, rows)?,
            bbox: ::polyhead::Target::<T>::select_rows(&self.bbox, rows)?,
            sample_weights: DigitLocatorOutputs {
                class: ::polyhead::__private::select_optional(
                    &self.sample_weights.class,
                    rows,
                )?,
                bbox: ::polyhead::__private::select_optional(
                    &self.sample_weights.bbox,
                    rows,
                )?,
                embedding: ::polyhead::__private::select_optional(
                    &self.sample_weights.embedding,
                    rows,
                )?,
            },
            masks: DigitLocatorOutputs {
                class: ::polyhead::__private::select_optional(&self.masks.class, rows)?,
                bbox: ::polyhead::__private::select_optional(&self.masks.bbox, rows)?,
                embedding: ::polyhead::__private::select_optional(
                    &self.masks.embedding,
                    rows,
                )?,
            },
        })
    }
    fn target(&self, name: &str) -> ::core::option::Option<&dyn ::polyhead::Target<T>> {
        match name {
            "class" => ::core::option::Option::Some(&self.class),
            "bbox" => ::core::option::Option::Some(&self.bbox),
            _ => ::core::option::Option::None,
        }
    }
    fn mask(
        &self,
        name: &str,
    ) -> ::core::option::Option<&::polyhead::tensor::Tensor<T>> {
        match name {
            "class" => self.masks.class.as_ref(),
            "bbox" => self.masks.bbox.as_ref(),
            _ => ::core::option::Option::None,
        }
    }
}
impl<T: ::polyhead::tensor::Float> DigitLocatorTargets<T> {
    /// The targets, in field order, with no sample weights or masks.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        class: ::polyhead::tensor::Tensor<T>,
        bbox: ::polyhead::tensor::Tensor<T>,
    ) -> Self {
        DigitLocatorTargets {
            class,
            bbox,
            sample_weights: DigitLocatorOutputs {
                class: ::core::option::Option::None,
                bbox: ::core::option::Option::None,
                embedding: ::core::option::Option::None,
            },
            masks: DigitLocatorOutputs {
                class: ::core::option::Option::None,
                bbox: ::core::option::Option::None,
                embedding: ::core::option::Option::None,
            },
        }
    }
    ///Sets head `class`'s per-sample weights.
    pub fn class_sample_weight(
        mut self,
        weights: ::polyhead::tensor::Tensor<T>,
    ) -> Self {
        self.sample_weights.class = ::core::option::Option::Some(weights);
        self
    }
    ///Sets head `bbox`'s per-sample weights.
    pub fn bbox_sample_weight(mut self, weights: ::polyhead::tensor::Tensor<T>) -> Self {
        self.sample_weights.bbox = ::core::option::Option::Some(weights);
        self
    }
    ///Sets head `class`'s 0/1 mask, one per sample: its loss becomes the mean over the samples whose mask is 1 (0 if none is).
    pub fn class_mask(mut self, mask: ::polyhead::tensor::Tensor<T>) -> Self {
        self.masks.class = ::core::option::Option::Some(mask);
        self
    }
    ///Sets head `bbox`'s 0/1 mask, one per sample: its loss becomes the mean over the samples whose mask is 1 (0 if none is).
    pub fn bbox_mask(mut self, mask: ::polyhead::tensor::Tensor<T>) -> Self {
        self.masks.bbox = ::core::option::Option::Some(mask);
        self
    }
}
///The weight of each of [`DigitLocator`]'s losses in the total; `Default` gives the weights written in the attributes. Change them between steps to schedule or learn them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DigitLocatorLossWeights {
    ///The weight of `class`'s loss.
    pub class: f64,
    ///The weight of `bbox`'s loss.
    pub bbox: f64,
}
impl ::core::default::Default for DigitLocatorLossWeights {
    fn default() -> Self {
        DigitLocatorLossWeights {
            class: 1f64,
            bbox: 0.5f64,
        }
    }
}
impl ::polyhead::LossWeights for DigitLocatorLossWeights {
    fn names(&self) -> &'static [&'static str] {
        &["class", "bbox"]
    }
    fn values(&self) -> ::std::vec::Vec<f64> {
        ::std::vec![self.class, self.bbox]
    }
    fn value_at(&self, __i: usize) -> ::core::option::Option<f64> {
        let __values: &[f64] = &[self.class, self.bbox];
        __values.get(__i).copied()
    }
    fn set(&mut self, name: &str, value: f64) -> ::polyhead::Result<()> {
        ::polyhead::check_weight(name, value)?;
        match name {
            "class" => self.class = value,
            "bbox" => self.bbox = value,
            other => {
                return ::core::result::Result::Err(::polyhead::Error::UnknownName {
                    context: ::std::string::ToString::to_string("loss weights"),
                    name: ::std::string::ToString::to_string(other),
                    known: ::std::vec![
                        ::std::string::ToString::to_string("class"),
                        ::std::string::ToString::to_string("bbox")
                    ],
                });
            }
        }
        ::core::result::Result::Ok(())
    }
}
impl ::polyhead::MultiOutput<f32> for DigitLocator
where
    Sequential: ::polyhead::layers::Module<f32>,
    Dense: ::polyhead::layers::Module<f32>,
    Dense: ::polyhead::layers::Module<f32>,
    Dense: ::polyhead::layers::Module<f32>,
{
    type Inputs<__V> = __V;
    type Outputs<__V> = DigitLocatorOutputs<__V>;
    type Targets = DigitLocatorTargets<f32>;
    type LossWeights = DigitLocatorLossWeights;
    const HEADS: &'static [&'static str] = &["class", "bbox", "embedding"];
    const LOSSES: &'static [&'static str] = &["class", "bbox"];
    const TRUNK: ::core::option::Option<&'static str> = ::core::option::Option::Some(
        "body",
    );
    const SHARED: &'static [&'static str] = &["body"];
    const INPUTS: &'static [&'static str] = &["x"];
    fn inputs_of<'__a>(
        __x: &'__a ::polyhead::tensor::Tensor<f32>,
    ) -> ::std::vec::Vec<(&'static str, &'__a ::polyhead::tensor::Tensor<f32>)> {
        ::std::vec![("x", __x)]
    }
    fn select_input_rows(
        __x: &::polyhead::tensor::Tensor<f32>,
        __rows: &[usize],
    ) -> ::polyhead::Result<::polyhead::tensor::Tensor<f32>> {
        ::polyhead::__private::select_rows(__x, __rows)
    }
    fn input_vars<'__t>(
        __tape: &'__t ::polyhead::autograd::Tape<f32>,
        __x: &::polyhead::tensor::Tensor<f32>,
    ) -> ::polyhead::autograd::Var<'__t, f32> {
        __tape.constant(::core::clone::Clone::clone(__x))
    }
    fn forward_with_features<'__t>(
        &self,
        __input: <Self as ::polyhead::MultiOutput<
            f32,
        >>::Inputs<::polyhead::autograd::Var<'__t, f32>>,
    ) -> ::polyhead::Result<
        (
            ::core::option::Option<::polyhead::autograd::Var<'__t, f32>>,
            <Self as ::polyhead::MultiOutput<
                f32,
            >>::Outputs<::polyhead::autograd::Var<'__t, f32>>,
        ),
    > {
        let __features = ::polyhead::__private::part::<
            f32,
            _,
        >("body", &self.body, __input)?;
        ::core::result::Result::Ok((
            ::core::option::Option::Some(__features),
            DigitLocatorOutputs {
                class: ::polyhead::__private::part::<
                    f32,
                    _,
                >("class", &self.class, __features)?,
                bbox: ::polyhead::__private::part::<
                    f32,
                    _,
                >("bbox", &self.bbox, __features)?,
                embedding: ::polyhead::__private::part::<
                    f32,
                    _,
                >("embedding", &self.embedding, __features)?,
            },
        ))
    }
    fn export_graph(
        &self,
        __graph: &mut ::polyhead::layers::export::Graph,
        __input: &str,
    ) -> ::polyhead::Result<::std::vec::Vec<(&'static str, ::std::string::String)>> {
        let __features: ::std::string::String = ::polyhead::layers::Module::<
            f32,
        >::export(&self.body, __graph, "body", __input)?;
        ::core::result::Result::Ok(
            ::std::vec![
                ("class", ::polyhead::layers::Module:: < f32 > ::export(& self.class,
                __graph, "class", & __features) ?,), ("bbox",
                ::polyhead::layers::Module:: < f32 > ::export(& self.bbox, __graph,
                "bbox", & __features) ?,), ("embedding", ::polyhead::layers::Module:: <
                f32 > ::export(& self.embedding, __graph, "embedding", & __features) ?,)
            ],
        )
    }
    fn head_values<'__t>(
        __outputs: &<Self as ::polyhead::MultiOutput<
            f32,
        >>::Outputs<::polyhead::autograd::Var<'__t, f32>>,
    ) -> ::std::vec::Vec<(&'static str, ::polyhead::autograd::Var<'__t, f32>)> {
        ::std::vec![
            ("class", __outputs.class), ("bbox", __outputs.bbox), ("embedding", __outputs
            .embedding)
        ]
    }
    fn map_outputs<__V, __U>(
        __outputs: <Self as ::polyhead::MultiOutput<f32>>::Outputs<__V>,
        __f: impl ::core::ops::FnMut(&'static str, __V) -> __U,
    ) -> <Self as ::polyhead::MultiOutput<f32>>::Outputs<__U> {
        __outputs.map(__f)
    }
    fn head_losses<'__t>(
        &self,
        __outputs: &<Self as ::polyhead::MultiOutput<
            f32,
        >>::Outputs<::polyhead::autograd::Var<'__t, f32>>,
        __targets: &<Self as ::polyhead::MultiOutput<f32>>::Targets,
    ) -> ::polyhead::Result<::std::vec::Vec<::polyhead::autograd::Var<'__t, f32>>> {
        ::core::result::Result::Ok(
            ::std::vec![
                ::polyhead::__private::head_loss:: < f32, _, _ > ("class", &
                (CrossEntropy::from_logits()), __outputs.class, & __targets.class,
                __targets.sample_weights.class.as_ref(), __targets.masks.class.as_ref(),)
                ?, ::polyhead::__private::head_loss:: < f32, _, _ > ("bbox", &
                (Mse::new()), __outputs.bbox, & __targets.bbox, __targets.sample_weights
                .bbox.as_ref(), __targets.masks.bbox.as_ref(),) ?,
            ],
        )
    }
}
impl ::polyhead::layers::Module<f32> for DigitLocator
where
    Sequential: ::polyhead::layers::Module<f32>,
    Dense: ::polyhead::layers::Module<f32>,
    Dense: ::polyhead::layers::Module<f32>,
    Dense: ::polyhead::layers::Module<f32>,
{
    /// All head outputs concatenated along the last axis.
    fn forward<'__t>(
        &self,
        __input: ::polyhead::autograd::Var<'__t, f32>,
    ) -> ::polyhead::layers::Result<::polyhead::autograd::Var<'__t, f32>> {
        let __outputs = <Self as ::polyhead::MultiOutput<
            f32,
        >>::forward_heads(self, __input)
            .map_err(|e| {
                ::polyhead::layers::LayerError::Invalid {
                    what: "multi_output",
                    message: ::std::string::ToString::to_string(&e),
                }
            })?;
        ::polyhead::__private::concat_outputs(
            &[__outputs.class, __outputs.bbox, __outputs.embedding],
        )
    }
    fn visit_parameters<'__a>(
        &'__a self,
        prefix: &str,
        f: &mut dyn ::core::ops::FnMut(
            ::std::string::String,
            &'__a ::polyhead::autograd::Parameter<f32>,
        ),
    ) {
        ::polyhead::layers::Module::<
            f32,
        >::visit_parameters(&self.body, &::std::format!("{}{}", prefix, "body."), f);
        ::polyhead::layers::Module::<
            f32,
        >::visit_parameters(&self.class, &::std::format!("{}{}", prefix, "class."), f);
        ::polyhead::layers::Module::<
            f32,
        >::visit_parameters(&self.bbox, &::std::format!("{}{}", prefix, "bbox."), f);
        ::polyhead::layers::Module::<
            f32,
        >::visit_parameters(
            &self.embedding,
            &::std::format!("{}{}", prefix, "embedding."),
            f,
        );
    }
    fn visit_parameters_mut<'__a>(
        &'__a mut self,
        prefix: &str,
        f: &mut dyn ::core::ops::FnMut(
            ::std::string::String,
            &'__a mut ::polyhead::autograd::Parameter<f32>,
        ),
    ) {
        ::polyhead::layers::Module::<
            f32,
        >::visit_parameters_mut(
            &mut self.body,
            &::std::format!("{}{}", prefix, "body."),
            f,
        );
        ::polyhead::layers::Module::<
            f32,
        >::visit_parameters_mut(
            &mut self.class,
            &::std::format!("{}{}", prefix, "class."),
            f,
        );
        ::polyhead::layers::Module::<
            f32,
        >::visit_parameters_mut(
            &mut self.bbox,
            &::std::format!("{}{}", prefix, "bbox."),
            f,
        );
        ::polyhead::layers::Module::<
            f32,
        >::visit_parameters_mut(
            &mut self.embedding,
            &::std::format!("{}{}", prefix, "embedding."),
            f,
        );
    }
    fn set_training(&mut self, training: bool) {
        ::polyhead::layers::Module::<f32>::set_training(&mut self.body, training);
        ::polyhead::layers::Module::<f32>::set_training(&mut self.class, training);
        ::polyhead::layers::Module::<f32>::set_training(&mut self.bbox, training);
        ::polyhead::layers::Module::<f32>::set_training(&mut self.embedding, training);
    }
    fn visit_buffers<'__a>(
        &'__a self,
        prefix: &str,
        f: &mut dyn ::core::ops::FnMut(
            ::std::string::String,
            &'__a ::polyhead::layers::Buffer<f32>,
        ),
    ) {
        ::polyhead::layers::Module::<
            f32,
        >::visit_buffers(&self.body, &::std::format!("{}{}", prefix, "body."), f);
        ::polyhead::layers::Module::<
            f32,
        >::visit_buffers(&self.class, &::std::format!("{}{}", prefix, "class."), f);
        ::polyhead::layers::Module::<
            f32,
        >::visit_buffers(&self.bbox, &::std::format!("{}{}", prefix, "bbox."), f);
        ::polyhead::layers::Module::<
            f32,
        >::visit_buffers(
            &self.embedding,
            &::std::format!("{}{}", prefix, "embedding."),
            f,
        );
    }
}
