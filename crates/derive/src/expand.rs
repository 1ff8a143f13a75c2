//! Generates the code for a parsed [`Model`]: the outputs, targets and
//! loss-weights structs, and the `MultiOutput` and `Module` impls. Every
//! path is fully qualified through `::polyhead`, so the code compiles
//! whatever the user imported.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Expr, Ident};

use crate::ast::{Head, Model};

pub fn expand(model: &Model<'_>) -> TokenStream {
    let name = &model.input.ident;
    let outputs = format_ident!("{}Outputs", name);
    let targets = format_ident!("{}Targets", name);
    let weights = format_ident!("{}LossWeights", name);
    let inputs = format_ident!("{}Inputs", name);

    let outputs_struct = expand_outputs(model, &outputs);
    let inputs_struct = expand_inputs(model, &inputs);
    let targets_struct = expand_targets(model, &outputs, &targets);
    let weights_struct = expand_weights(model, &weights);

    // impl<user generics> MultiOutput<E> for Name<...> where <field types>: Module<E>
    let elem = &model.element;
    let mut generics = model.input.generics.clone();
    let where_clause = generics.make_where_clause();
    for part in model
        .trunk
        .iter()
        .chain(model.layers.iter().map(|(p, _)| p))
        .chain(model.heads.iter().map(|h| &h.part))
    {
        let ty = part.ty;
        where_clause
            .predicates
            .push(syn::parse_quote!(#ty: ::polyhead::layers::Module<#elem>));
    }
    let (impl_generics, _, where_clause) = generics.split_for_impl();
    let (_, ty_generics, _) = model.input.generics.split_for_impl();

    let head_idents: Vec<&Ident> = model.heads.iter().map(|h| h.part.ident).collect();
    let head_names: Vec<String> = head_idents.iter().map(|i| i.to_string()).collect();
    let lossy: Vec<&Head<'_>> = model.heads.iter().filter(|h| h.loss.is_some()).collect();
    let loss_names: Vec<String> = lossy
        .iter()
        .map(|h| h.part.ident.to_string())
        .chain(model.terms.iter().map(|t| t.name.value()))
        .collect();

    let trunk_name = match &model.trunk {
        Some(t) => {
            let n = t.ident.to_string();
            quote!(::core::option::Option::Some(#n))
        }
        None => quote!(::core::option::Option::None),
    };
    let shared_names: Vec<String> = model
        .trunk
        .iter()
        .chain(
            model
                .layers
                .iter()
                .filter(|(_, shared)| *shared)
                .map(|(p, _)| p),
        )
        .map(|p| p.ident.to_string())
        .collect();
    let features_out = match &model.trunk {
        Some(_) => quote!(::core::option::Option::Some(__features)),
        None => quote!(::core::option::Option::None),
    };
    let features = match &model.trunk {
        Some(trunk) => {
            let ident = trunk.ident;
            let label = ident.to_string();
            quote!(::polyhead::__private::part::<#elem, _>(#label, &self.#ident, __input)?)
        }
        None => quote!(__input),
    };
    let head_forwards = head_idents.iter().zip(&head_names).map(|(ident, label)| {
        quote!(#ident: ::polyhead::__private::part::<#elem, _>(#label, &self.#ident, __features)?)
    });
    let forward_body = match &model.forward {
        // The user's forward: no trunk, so no shared features.
        Some(path) => quote_spanned! {path.span()=>
            let __outputs: #outputs<::polyhead::autograd::Var<'__t, #elem>> = #path(self, __input)?;
            ::core::result::Result::Ok((::core::option::Option::None, __outputs))
        },
        None => quote! {
            let __features = #features;
            ::core::result::Result::Ok((#features_out, #outputs { #(#head_forwards),* }))
        },
    };
    // The inference graph of a trunk-and-heads model with one input; a
    // model with its own forward keeps the trait's default (an error).
    let export_method = match (&model.forward, model.inputs.is_empty()) {
        (None, true) => {
            let features = match &model.trunk {
                Some(trunk) => {
                    let ident = trunk.ident;
                    let label = ident.to_string();
                    quote!(::polyhead::layers::Module::<#elem>::export(&self.#ident, __graph, #label, __input)?)
                }
                None => quote!(::std::string::ToString::to_string(__input)),
            };
            quote! {
                fn export_graph(
                    &self,
                    __graph: &mut ::polyhead::layers::export::Graph,
                    __input: &str,
                ) -> ::polyhead::Result<::std::vec::Vec<(&'static str, ::std::string::String)>> {
                    let __features: ::std::string::String = #features;
                    ::core::result::Result::Ok(::std::vec![#((
                        #head_names,
                        ::polyhead::layers::Module::<#elem>::export(&self.#head_idents, __graph, #head_names, &__features)?,
                    )),*])
                }
            }
        }
        _ => quote!(),
    };
    let tensor = quote!(::polyhead::tensor::Tensor<#elem>);
    let input_names: Vec<String> = model.inputs.iter().map(|i| i.to_string()).collect();
    let input_idents = &model.inputs;
    let (inputs_type, input_methods) = if model.inputs.is_empty() {
        (
            quote!(__V),
            quote! {
                const INPUTS: &'static [&'static str] = &["x"];
                fn inputs_of<'__a>(__x: &'__a #tensor) -> ::std::vec::Vec<(&'static str, &'__a #tensor)> {
                    ::std::vec![("x", __x)]
                }
                fn select_input_rows(__x: &#tensor, __rows: &[usize]) -> ::polyhead::Result<#tensor> {
                    ::polyhead::__private::select_rows(__x, __rows)
                }
                fn input_vars<'__t>(__tape: &'__t ::polyhead::autograd::Tape<#elem>, __x: &#tensor) -> ::polyhead::autograd::Var<'__t, #elem> {
                    __tape.constant(::core::clone::Clone::clone(__x))
                }
            },
        )
    } else {
        (
            quote!(#inputs<__V>),
            quote! {
                const INPUTS: &'static [&'static str] = &[#(#input_names),*];
                fn inputs_of<'__a>(__x: &'__a #inputs<#tensor>) -> ::std::vec::Vec<(&'static str, &'__a #tensor)> {
                    ::std::vec![#((#input_names, &__x.#input_idents)),*]
                }
                fn select_input_rows(__x: &#inputs<#tensor>, __rows: &[usize]) -> ::polyhead::Result<#inputs<#tensor>> {
                    ::core::result::Result::Ok(#inputs { #(#input_idents: ::polyhead::__private::select_rows(&__x.#input_idents, __rows)?),* })
                }
                fn input_vars<'__t>(__tape: &'__t ::polyhead::autograd::Tape<#elem>, __x: &#inputs<#tensor>) -> #inputs<::polyhead::autograd::Var<'__t, #elem>> {
                    #inputs { #(#input_idents: __tape.constant(::core::clone::Clone::clone(&__x.#input_idents))),* }
                }
            },
        )
    };
    let module_forward = if model.inputs.is_empty() {
        quote! {
            let __outputs = <Self as ::polyhead::MultiOutput<#elem>>::forward_heads(self, __input).map_err(|e| {
                ::polyhead::layers::LayerError::Invalid { what: "multi_output", message: ::std::string::ToString::to_string(&e) }
            })?;
            ::polyhead::__private::concat_outputs(&[#(__outputs.#head_idents),*])
        }
    } else {
        let message = format!(
            "`{name}` takes several inputs ({}): call `forward_heads` with a `{inputs}`",
            input_names.join(", ")
        );
        quote! {
            let _ = __input;
            ::core::result::Result::Err(::polyhead::layers::LayerError::Invalid { what: "multi_output", message: ::std::string::ToString::to_string(#message) })
        }
    };
    let head_losses = lossy.iter().map(|h| {
        let ident = h.part.ident;
        let label = ident.to_string();
        let spec = h.loss.as_ref().expect("lossy");
        let expr = &spec.expr;
        let loss = match expr {
            Expr::Closure(_) => quote_spanned!(expr.span()=> &::polyhead::__private::closure_loss::<#elem, _>(#label, #expr)),
            _ => quote_spanned!(expr.span()=> &(#expr)),
        };
        quote_spanned! {expr.span()=>
            ::polyhead::__private::head_loss::<#elem, _, _>(
                #label,
                #loss,
                __outputs.#ident,
                &__targets.#ident,
                __targets.sample_weights.#ident.as_ref(),
                __targets.masks.#ident.as_ref(),
            )?
        }
    });
    let term_losses = model.terms.iter().map(|t| {
        let label = t.name.value();
        let with = &t.with;
        quote_spanned!(with.span()=> ::polyhead::__private::term::<#elem>(#label, #with(__outputs, __targets))?)
    });
    let visit = |mutable: bool| {
        let parts = model.trunk.iter().chain(model.layers.iter().map(|(p, _)| p)).chain(model.heads.iter().map(|h| &h.part)).map(|p| {
            let ident = p.ident;
            let prefix = format!("{ident}.");
            if mutable {
                quote!(::polyhead::layers::Module::<#elem>::visit_parameters_mut(&mut self.#ident, &::std::format!("{}{}", prefix, #prefix), f);)
            } else {
                quote!(::polyhead::layers::Module::<#elem>::visit_parameters(&self.#ident, &::std::format!("{}{}", prefix, #prefix), f);)
            }
        });
        quote!(#(#parts)*)
    };
    let visit_ref = visit(false);
    let visit_mut = visit(true);
    let visit_buffers = model
        .trunk
        .iter()
        .chain(model.layers.iter().map(|(p, _)| p))
        .chain(model.heads.iter().map(|h| &h.part))
        .map(|p| {
            let ident = p.ident;
            let prefix = format!("{ident}.");
            quote!(::polyhead::layers::Module::<#elem>::visit_buffers(&self.#ident, &::std::format!("{}{}", prefix, #prefix), f);)
        });
    let set_training = model
        .trunk
        .iter()
        .chain(model.layers.iter().map(|(p, _)| p))
        .chain(model.heads.iter().map(|h| &h.part))
        .map(|p| {
            let ident = p.ident;
            quote!(::polyhead::layers::Module::<#elem>::set_training(&mut self.#ident, training);)
        });

    quote! {
        #inputs_struct
        #outputs_struct
        #targets_struct
        #weights_struct

        impl #impl_generics ::polyhead::MultiOutput<#elem> for #name #ty_generics #where_clause {
            type Inputs<__V> = #inputs_type;
            type Outputs<__V> = #outputs<__V>;
            type Targets = #targets<#elem>;
            type LossWeights = #weights;

            const HEADS: &'static [&'static str] = &[#(#head_names),*];
            const LOSSES: &'static [&'static str] = &[#(#loss_names),*];

            const TRUNK: ::core::option::Option<&'static str> = #trunk_name;
            const SHARED: &'static [&'static str] = &[#(#shared_names),*];

            #input_methods

            fn forward_with_features<'__t>(
                &self,
                __input: <Self as ::polyhead::MultiOutput<#elem>>::Inputs<::polyhead::autograd::Var<'__t, #elem>>,
            ) -> ::polyhead::Result<(
                ::core::option::Option<::polyhead::autograd::Var<'__t, #elem>>,
                <Self as ::polyhead::MultiOutput<#elem>>::Outputs<::polyhead::autograd::Var<'__t, #elem>>,
            )> {
                #forward_body
            }

            #export_method

            fn head_values<'__t>(
                __outputs: &<Self as ::polyhead::MultiOutput<#elem>>::Outputs<::polyhead::autograd::Var<'__t, #elem>>,
            ) -> ::std::vec::Vec<(&'static str, ::polyhead::autograd::Var<'__t, #elem>)> {
                ::std::vec![#((#head_names, __outputs.#head_idents)),*]
            }

            fn map_outputs<__V, __U>(
                __outputs: <Self as ::polyhead::MultiOutput<#elem>>::Outputs<__V>,
                __f: impl ::core::ops::FnMut(&'static str, __V) -> __U,
            ) -> <Self as ::polyhead::MultiOutput<#elem>>::Outputs<__U> {
                __outputs.map(__f)
            }

            fn head_losses<'__t>(
                &self,
                __outputs: &<Self as ::polyhead::MultiOutput<#elem>>::Outputs<::polyhead::autograd::Var<'__t, #elem>>,
                __targets: &<Self as ::polyhead::MultiOutput<#elem>>::Targets,
            ) -> ::polyhead::Result<::std::vec::Vec<::polyhead::autograd::Var<'__t, #elem>>> {
                ::core::result::Result::Ok(::std::vec![#(#head_losses,)* #(#term_losses,)*])
            }
        }

        impl #impl_generics ::polyhead::layers::Module<#elem> for #name #ty_generics #where_clause {
            /// All head outputs concatenated along the last axis.
            fn forward<'__t>(
                &self,
                __input: ::polyhead::autograd::Var<'__t, #elem>,
            ) -> ::polyhead::layers::Result<::polyhead::autograd::Var<'__t, #elem>> {
                #module_forward
            }

            fn visit_parameters<'__a>(
                &'__a self,
                prefix: &str,
                f: &mut dyn ::core::ops::FnMut(::std::string::String, &'__a ::polyhead::autograd::Parameter<#elem>),
            ) {
                #visit_ref
            }

            fn visit_parameters_mut<'__a>(
                &'__a mut self,
                prefix: &str,
                f: &mut dyn ::core::ops::FnMut(::std::string::String, &'__a mut ::polyhead::autograd::Parameter<#elem>),
            ) {
                #visit_mut
            }

            fn set_training(&mut self, training: bool) {
                #(#set_training)*
            }

            fn visit_buffers<'__a>(
                &'__a self,
                prefix: &str,
                f: &mut dyn ::core::ops::FnMut(::std::string::String, &'__a ::polyhead::layers::Buffer<#elem>),
            ) {
                #(#visit_buffers)*
            }
        }
    }
}

/// `<Name>Inputs<V>`: one value per named input (nothing for a model of
/// one input, whose input is a bare value).
fn expand_inputs(model: &Model<'_>, inputs: &Ident) -> TokenStream {
    if model.inputs.is_empty() {
        return TokenStream::new();
    }
    let name = &model.input.ident;
    let vis = &model.input.vis;
    let idents = &model.inputs;
    let labels: Vec<String> = idents.iter().map(|i| i.to_string()).collect();
    let n = idents.len();
    let doc = format!(
        "The inputs of [`{name}`], one value per input: `Tensor`s for `Trainer::fit`, `evaluate` and `predict`, `Var`s in the forward pass."
    );
    quote! {
        #[doc = #doc]
        #[derive(Debug, Clone, PartialEq)]
        #vis struct #inputs<V> {
            #(
                #[doc = ::core::concat!("The input `", #labels, "`.")]
                pub #idents: V,
            )*
        }

        impl<V> #inputs<V> {
            /// The inputs' names, in declaration order.
            pub const NAMES: [&'static str; #n] = [#(#labels),*];
            /// `f(name, value)` applied to each input.
            pub fn map<U>(self, mut f: impl ::core::ops::FnMut(&'static str, V) -> U) -> #inputs<U> {
                #inputs { #(#idents: f(#labels, self.#idents)),* }
            }
            /// References to the values, as (name, value) pairs in declaration order.
            pub fn iter(&self) -> ::core::array::IntoIter<(&'static str, &V), #n> {
                [#((#labels, &self.#idents)),*].into_iter()
            }
        }
    }
}

fn expand_outputs(model: &Model<'_>, outputs: &Ident) -> TokenStream {
    let name = &model.input.ident;
    let vis = &model.input.vis;
    let idents: Vec<&Ident> = model.heads.iter().map(|h| h.part.ident).collect();
    let labels: Vec<String> = idents.iter().map(|i| i.to_string()).collect();
    let docs = model.heads.iter().map(|h| &h.part.docs);
    let n = idents.len();
    let vs = idents.iter().map(|_| quote!(V));
    let vs2 = vs.clone();
    let doc = format!(
        "One value per head of [`{name}`] (its outputs, or anything else kept per head), in field order."
    );
    quote! {
        #[doc = #doc]
        #[derive(Debug, Clone, Copy, PartialEq, Default)]
        #vis struct #outputs<V> {
            #(#(#docs)* pub #idents: V,)*
        }

        impl<V> #outputs<V> {
            /// The heads' names, in field order.
            pub const NAMES: [&'static str; #n] = [#(#labels),*];

            /// The values as a tuple, in field order.
            pub fn into_tuple(self) -> (#(#vs,)*) {
                (#(self.#idents,)*)
            }

            /// Applies `f` to each head's name and value.
            pub fn map<U>(self, mut f: impl ::core::ops::FnMut(&'static str, V) -> U) -> #outputs<U> {
                #outputs { #(#idents: f(#labels, self.#idents)),* }
            }

            /// References to the values, as (name, value) pairs in field order.
            pub fn iter(&self) -> ::core::array::IntoIter<(&'static str, &V), #n> {
                [#((#labels, &self.#idents)),*].into_iter()
            }
        }

        impl<V> ::core::convert::From<#outputs<V>> for (#(#vs2,)*) {
            fn from(outputs: #outputs<V>) -> Self {
                outputs.into_tuple()
            }
        }

        impl<V> ::core::iter::IntoIterator for #outputs<V> {
            type Item = (&'static str, V);
            type IntoIter = ::core::array::IntoIter<(&'static str, V), #n>;
            fn into_iter(self) -> Self::IntoIter {
                [#((#labels, self.#idents)),*].into_iter()
            }
        }
    }
}

fn expand_targets(model: &Model<'_>, outputs: &Ident, targets: &Ident) -> TokenStream {
    let name = &model.input.ident;
    let vis = &model.input.vis;
    let lossy: Vec<&Head<'_>> = model.heads.iter().filter(|h| h.loss.is_some()).collect();
    let idents: Vec<&Ident> = lossy.iter().map(|h| h.part.ident).collect();
    let all: Vec<&Ident> = model.heads.iter().map(|h| h.part.ident).collect();
    let types: Vec<TokenStream> = lossy
        .iter()
        .map(|h| match &h.loss.as_ref().expect("lossy").target {
            Some(t) => quote!(#t),
            None => quote!(::polyhead::tensor::Tensor<T>),
        })
        .collect();
    let docs: Vec<String> = idents
        .iter()
        .map(|i| format!("The target of head `{i}`."))
        .collect();
    let labels: Vec<String> = idents.iter().map(|i| i.to_string()).collect();
    let weight_fns = idents.iter().map(|i| {
        let f = format_ident!("{}_sample_weight", i);
        let doc = format!("Sets head `{i}`'s per-sample weights.");
        quote! {
            #[doc = #doc]
            pub fn #f(mut self, weights: ::polyhead::tensor::Tensor<T>) -> Self {
                self.sample_weights.#i = ::core::option::Option::Some(weights);
                self
            }
        }
    });
    let mask_fns = idents.iter().map(|i| {
        let f = format_ident!("{}_mask", i);
        let doc = format!(
            "Sets head `{i}`'s 0/1 mask, one per sample: its loss becomes the mean over the samples whose mask is 1 (0 if none is)."
        );
        quote! {
            #[doc = #doc]
            pub fn #f(mut self, mask: ::polyhead::tensor::Tensor<T>) -> Self {
                self.masks.#i = ::core::option::Option::Some(mask);
                self
            }
        }
    });
    let doc = format!(
        "The targets of [`{name}`]'s heads that have a loss, with optional per-head sample weights and masks."
    );
    quote! {
        #[doc = #doc]
        #vis struct #targets<T: ::polyhead::tensor::Float> {
            #(#[doc = #docs] pub #idents: #types,)*
            /// Per-head sample weights (heads without a loss ignore theirs).
            pub sample_weights: #outputs<::core::option::Option<::polyhead::tensor::Tensor<T>>>,
            /// Per-head 0/1 masks, one per sample (heads without a loss ignore theirs).
            pub masks: #outputs<::core::option::Option<::polyhead::tensor::Tensor<T>>>,
        }

        impl<T: ::polyhead::tensor::Float> ::polyhead::TargetSet<T> for #targets<T>
        where
            #(#types: ::polyhead::Target<T>,)*
        {
            fn rows(&self) -> ::polyhead::Result<usize> {
                ::polyhead::__private::common_rows(&[#((#labels, ::polyhead::Target::<T>::rows(&self.#idents))),*])
            }

            fn select_rows(&self, rows: &[usize]) -> ::polyhead::Result<Self> {
                ::core::result::Result::Ok(#targets {
                    #(#idents: ::polyhead::Target::<T>::select_rows(&self.#idents, rows)?,)*
                    sample_weights: #outputs { #(#all: ::polyhead::__private::select_optional(&self.sample_weights.#all, rows)?),* },
                    masks: #outputs { #(#all: ::polyhead::__private::select_optional(&self.masks.#all, rows)?),* },
                })
            }

            fn target(&self, name: &str) -> ::core::option::Option<&dyn ::polyhead::Target<T>> {
                match name {
                    #(#labels => ::core::option::Option::Some(&self.#idents),)*
                    _ => ::core::option::Option::None,
                }
            }

            fn mask(&self, name: &str) -> ::core::option::Option<&::polyhead::tensor::Tensor<T>> {
                match name {
                    #(#labels => self.masks.#idents.as_ref(),)*
                    _ => ::core::option::Option::None,
                }
            }
        }

        impl<T: ::polyhead::tensor::Float> #targets<T> {
            /// The targets, in field order, with no sample weights or masks.
            #[allow(clippy::too_many_arguments)]
            pub fn new(#(#idents: #types),*) -> Self {
                #targets {
                    #(#idents,)*
                    sample_weights: #outputs { #(#all: ::core::option::Option::None),* },
                    masks: #outputs { #(#all: ::core::option::Option::None),* },
                }
            }

            #(#weight_fns)*
            #(#mask_fns)*
        }
    }
}

fn expand_weights(model: &Model<'_>, weights: &Ident) -> TokenStream {
    let name = &model.input.ident;
    let vis = &model.input.vis;
    let mut idents: Vec<Ident> = Vec::new();
    let mut values: Vec<f64> = Vec::new();
    for h in &model.heads {
        if let Some(spec) = &h.loss {
            idents.push(h.part.ident.clone());
            values.push(spec.weight);
        }
    }
    for t in &model.terms {
        idents.push(Ident::new(&t.name.value(), t.name.span()));
        values.push(t.weight);
    }
    let labels: Vec<String> = idents.iter().map(|i| i.to_string()).collect();
    let docs: Vec<String> = labels
        .iter()
        .map(|l| format!("The weight of `{l}`'s loss."))
        .collect();
    let doc = format!(
        "The weight of each of [`{name}`]'s losses in the total; `Default` gives the weights written in the attributes. Change them between steps to schedule or learn them."
    );
    quote! {
        #[doc = #doc]
        #[derive(Debug, Clone, Copy, PartialEq)]
        #vis struct #weights {
            #(#[doc = #docs] pub #idents: f64,)*
        }

        impl ::core::default::Default for #weights {
            fn default() -> Self {
                #weights { #(#idents: #values),* }
            }
        }

        impl ::polyhead::LossWeights for #weights {
            fn names(&self) -> &'static [&'static str] {
                &[#(#labels),*]
            }

            fn values(&self) -> ::std::vec::Vec<f64> {
                ::std::vec![#(self.#idents),*]
            }

            fn value_at(&self, __i: usize) -> ::core::option::Option<f64> {
                let __values: &[f64] = &[#(self.#idents),*];
                __values.get(__i).copied()
            }

            fn set(&mut self, name: &str, value: f64) -> ::polyhead::Result<()> {
                ::polyhead::check_weight(name, value)?;
                match name {
                    #(#labels => self.#idents = value,)*
                    other => {
                        return ::core::result::Result::Err(::polyhead::Error::UnknownName {
                            context: ::std::string::ToString::to_string("loss weights"),
                            name: ::std::string::ToString::to_string(other),
                            known: ::std::vec![#(::std::string::ToString::to_string(#labels)),*],
                        })
                    }
                }
                ::core::result::Result::Ok(())
            }
        }
    }
}
