//! Parses the derive input into a small typed model of the struct, checking
//! it as it goes. Every mistake is recorded (at the user's token) and
//! reported together.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{Attribute, Data, DeriveInput, Expr, Fields, Ident, Lit, LitStr, Path, Type, UnOp};

/// Names the generated code gives meaning to; a head or term may not use
/// them.
const RESERVED: &[&str] = &["loss", "sample_weights", "masks"];

/// The model struct, as the generator needs it.
pub struct Model<'a> {
    pub input: &'a DeriveInput,
    /// The element type: `#[multi_output(element = ...)]`, else the struct's
    /// type parameter bounded by `Float`, else `f32`.
    pub element: Type,
    pub trunk: Option<Part<'a>>,
    pub heads: Vec<Head<'a>>,
    pub terms: Vec<Term>,
    /// `#[layer]` fields: layers a forward of the user's own uses, whose
    /// parameters, buffers and training mode belong to the model; `true`
    /// for `#[layer(shared)]` (parameters every head depends on).
    pub layers: Vec<(Part<'a>, bool)>,
    /// `#[multi_output(inputs(a, b))]`: the model's named inputs (none: one
    /// bare input).
    pub inputs: Vec<Ident>,
    /// `#[multi_output(forward = path)]`: the user's forward.
    pub forward: Option<Path>,
}

/// What `#[multi_output(...)]` says about the whole struct.
#[derive(Default)]
struct StructAttrs {
    terms: Vec<Term>,
    element: Option<Type>,
    inputs: Option<(Vec<Ident>, Span)>,
    forward: Option<Path>,
}

/// A trunk or head field.
pub struct Part<'a> {
    pub ident: &'a Ident,
    pub ty: &'a Type,
    pub docs: Vec<&'a Attribute>,
}

/// A head: its field and, unless it is output-only, its loss.
pub struct Head<'a> {
    pub part: Part<'a>,
    pub loss: Option<HeadLoss>,
}

/// A head's `loss = ...`, `weight = ...` and `target = ...`.
pub struct HeadLoss {
    pub expr: Expr,
    pub weight: f64,
    pub target: Option<Type>,
}

/// A struct-level loss term: `#[multi_output(term(name = "...", weight = ..., with = path))]`.
pub struct Term {
    pub name: LitStr,
    pub weight: f64,
    pub with: Path,
}

/// Collects errors; one `compile_error!` per error, all emitted together.
#[derive(Default)]
pub struct Errors(Option<syn::Error>);

impl Errors {
    pub fn push(&mut self, e: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(e),
            None => self.0 = Some(e),
        }
    }
    pub fn at(&mut self, tokens: impl quote::ToTokens, msg: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(tokens, msg));
    }
    pub fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

pub fn parse(input: &DeriveInput) -> syn::Result<Model<'_>> {
    let mut errors = Errors::default();
    let fields = match &input.data {
        Data::Struct(s) => match &s.fields {
            Fields::Named(named) => Some(&named.named),
            other => {
                errors.at(
                    other,
                    "#[derive(MultiOutput)] needs a struct with named fields: each head is a named field",
                );
                None
            }
        },
        Data::Enum(e) => {
            errors.push(syn::Error::new(
                e.enum_token.span(),
                "#[derive(MultiOutput)] works on structs, not enums: write a struct with one field per head",
            ));
            None
        }
        Data::Union(u) => {
            errors.push(syn::Error::new(
                u.union_token.span(),
                "#[derive(MultiOutput)] works on structs, not unions",
            ));
            None
        }
    };
    let StructAttrs {
        terms,
        element,
        inputs,
        forward,
    } = parse_struct_attrs(&input.attrs, &mut errors);
    let element = element
        .or_else(|| float_param(input))
        .unwrap_or_else(|| syn::parse_quote!(f32));
    let mut trunk: Option<Part<'_>> = None;
    let mut heads = Vec::new();
    let mut layers = Vec::new();
    for field in fields.into_iter().flatten() {
        let ident = field.ident.as_ref().expect("named field");
        let docs: Vec<&Attribute> = field
            .attrs
            .iter()
            .filter(|a| a.path().is_ident("doc"))
            .collect();
        let mut is_trunk = false;
        let mut is_layer = false;
        let mut shared = false;
        let mut head: Option<Option<HeadLoss>> = None;
        for attr in &field.attrs {
            if attr.path().is_ident("layer") {
                if !matches!(attr.meta, syn::Meta::Path(_)) {
                    let result = attr.parse_nested_meta(|meta| {
                        if meta.path.is_ident("shared") {
                            shared = true;
                        } else {
                            errors.at(&meta.path, format!("unknown key `{}` in #[layer]; expected `shared` (parameters every head depends on)", key_name(&meta.path)));
                            skip_value(&meta)?;
                        }
                        Ok(())
                    });
                    if let Err(e) = result {
                        errors.push(e);
                    }
                }
                is_layer = true;
            } else if attr.path().is_ident("trunk") {
                if !matches!(attr.meta, syn::Meta::Path(_)) {
                    errors.at(attr, "`#[trunk]` takes no arguments; a trunk has no loss (put `loss = ...` on a `#[head]` field)");
                }
                is_trunk = true;
            } else if attr.path().is_ident("head") {
                head = Some(parse_head(attr, &mut errors));
            }
        }
        let part = Part {
            ident,
            ty: &field.ty,
            docs,
        };
        if is_layer {
            if is_trunk || head.is_some() {
                errors.at(ident, format!("`{ident}` is marked `#[layer]` and `#[trunk]` or `#[head]`; a field is one of them"));
            } else if forward.is_none() {
                errors.at(ident, format!("`#[layer]` marks a layer of a forward of your own: add `#[multi_output(forward = path)]` to the struct, or make `{ident}` the `#[trunk]`"));
            }
            layers.push((part, shared));
            continue;
        }
        if is_trunk && forward.is_some() {
            errors.at(ident, format!("with `forward = ...` the forward is yours and there is no trunk: mark `{ident}` `#[layer]`"));
        }
        match (is_trunk, head) {
            (true, Some(_)) => errors.at(ident, format!("`{ident}` is marked both `#[trunk]` and `#[head]`; a field is one or the other")),
            (true, None) => match &trunk {
                Some(first) => errors.at(
                    ident,
                    format!("a model has one trunk, and `{}` is already it; put shared layers in one `Sequential`", first.ident),
                ),
                None => trunk = Some(part),
            },
            (false, Some(loss)) => {
                if RESERVED.contains(&ident.to_string().as_str()) {
                    errors.at(ident, format!("`{ident}` is a reserved name in generated code (reserved: {}); rename the head", RESERVED.join(", ")));
                }
                heads.push(Head { part, loss });
            }
            (false, None) => {}
        }
    }
    if fields.is_some() && heads.is_empty() {
        errors.at(
            &input.ident,
            "a MultiOutput model needs at least one `#[head]` field",
        );
    }
    for term in &terms {
        let name = term.name.value();
        if RESERVED.contains(&name.as_str()) {
            errors.at(
                &term.name,
                format!("`{name}` is a reserved name; rename the term"),
            );
        }
        if heads.iter().any(|h| *h.part.ident == name) {
            errors.at(
                &term.name,
                format!("the term `{name}` has the same name as a head; loss names must be unique"),
            );
        }
    }
    for (i, t) in terms.iter().enumerate() {
        if terms[..i].iter().any(|u| u.name.value() == t.name.value()) {
            errors.at(&t.name, format!("two terms are named `{}`", t.name.value()));
        }
    }
    let inputs = match inputs {
        Some((names, span)) => {
            if forward.is_none() {
                errors.push(syn::Error::new(span, "a model with named inputs needs a forward of your own: add `forward = path` (a method taking the generated inputs struct)"));
            }
            for (i, n) in names.iter().enumerate() {
                if names[..i].contains(n) {
                    errors.at(n, format!("the input `{n}` is named twice"));
                }
            }
            if names.is_empty() {
                errors.push(syn::Error::new(
                    span,
                    "`inputs()` is empty: name at least one input",
                ));
            }
            names
        }
        None => Vec::new(),
    };
    errors.finish()?;
    Ok(Model {
        input,
        element,
        trunk,
        heads,
        terms,
        layers,
        inputs,
        forward,
    })
}

/// `#[head]` (output only) or `#[head(loss = ..., weight = ..., target = ...)]`.
fn parse_head(attr: &Attribute, errors: &mut Errors) -> Option<HeadLoss> {
    if matches!(attr.meta, syn::Meta::Path(_)) {
        return None;
    }
    let (mut loss, mut weight, mut target) = (None, None, None);
    let result = attr.parse_nested_meta(|meta| {
        if meta.path.is_ident("loss") {
            let expr = value(&meta, "loss = <loss expression>")?.parse::<Expr>()?;
            given_once(&mut loss, expr, &meta.path, "#[head]", errors);
        } else if meta.path.is_ident("weight") {
            let expr: Expr = value(&meta, "weight = <number>")?.parse()?;
            let parsed = (number(&expr, errors), expr);
            given_once(&mut weight, parsed, &meta.path, "#[head]", errors);
        } else if meta.path.is_ident("target") {
            let ty = value(&meta, "target = <type>")?.parse::<Type>()?;
            given_once(&mut target, ty, &meta.path, "#[head]", errors);
        } else {
            errors.at(
                &meta.path,
                format!(
                    "unknown key `{}` in #[head]; expected `loss`, `weight` or `target`",
                    key_name(&meta.path)
                ),
            );
            skip_value(&meta)?;
        }
        Ok(())
    });
    if let Err(e) = result {
        errors.push(e);
        return None;
    }
    match loss {
        Some(expr) => Some(HeadLoss {
            expr,
            weight: weight.and_then(|(w, _)| w).unwrap_or(1.0),
            target,
        }),
        None => {
            if let Some((_, expr)) = &weight {
                errors.at(
                    expr,
                    "`weight` needs a `loss`; an output-only head is written `#[head]` alone",
                );
            }
            if let Some(t) = &target {
                errors.at(
                    t,
                    "`target` needs a `loss`; an output-only head is written `#[head]` alone",
                );
            }
            if weight.is_none() && target.is_none() {
                errors.at(attr, "`#[head()]` is empty: write `#[head]` for an output-only head, or `#[head(loss = ...)]`");
            }
            None
        }
    }
}

/// A finite non-negative number literal, or an error at it.
fn number(expr: &Expr, errors: &mut Errors) -> Option<f64> {
    let (negative, lit) = match expr {
        Expr::Lit(l) => (false, &l.lit),
        Expr::Unary(u) if matches!(u.op, UnOp::Neg(_)) => match &*u.expr {
            Expr::Lit(l) => (true, &l.lit),
            _ => (
                false,
                &Lit::Bool(syn::LitBool::new(false, Span::call_site())),
            ),
        },
        _ => (
            false,
            &Lit::Bool(syn::LitBool::new(false, Span::call_site())),
        ),
    };
    let value = match lit {
        Lit::Float(f) => f.base10_parse::<f64>().ok(),
        Lit::Int(i) => i.base10_parse::<f64>().ok(),
        _ => None,
    };
    match value {
        Some(v) if !negative && v.is_finite() => Some(v),
        Some(_) => {
            errors.at(expr, "a loss weight must be a finite non-negative number");
            None
        }
        None => {
            errors.at(expr, "a loss weight must be a number literal such as `0.5`; change weights at run time through the generated `LossWeights`");
            None
        }
    }
}

/// The struct's type parameter bounded by `Float` (any path ending in
/// `Float`), the natural element type of a generic model.
fn float_param(input: &DeriveInput) -> Option<Type> {
    let is_float = |b: &syn::TypeParamBound| matches!(b, syn::TypeParamBound::Trait(t) if t.path.segments.last().is_some_and(|s| s.ident == "Float"));
    for p in input.generics.type_params() {
        let in_where = input
            .generics
            .where_clause
            .iter()
            .flat_map(|w| &w.predicates)
            .any(|pred| match pred {
                syn::WherePredicate::Type(t) => {
                    matches!(&t.bounded_ty, Type::Path(tp) if tp.path.is_ident(&p.ident))
                        && t.bounds.iter().any(is_float)
                }
                _ => false,
            });
        if p.bounds.iter().any(is_float) || in_where {
            let ident = &p.ident;
            return Some(syn::parse_quote!(#ident));
        }
    }
    None
}

/// `#[multi_output(element = f64, inputs(a, b), forward = path, term(name = "...", weight = ..., with = path))]`.
fn parse_struct_attrs(attrs: &[Attribute], errors: &mut Errors) -> StructAttrs {
    let mut terms = Vec::new();
    let mut element = None;
    let mut inputs = None;
    let mut forward = None;
    for attr in attrs.iter().filter(|a| a.path().is_ident("multi_output")) {
        let result = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("element") {
                let ty = value(&meta, "element = <type>")?.parse::<Type>()?;
                given_once(&mut element, ty, &meta.path, "#[multi_output]", errors);
                return Ok(());
            }
            if meta.path.is_ident("forward") {
                let path = value(&meta, "forward = path::to::method")?.parse::<Path>()?;
                given_once(&mut forward, path, &meta.path, "#[multi_output]", errors);
                return Ok(());
            }
            if meta.path.is_ident("inputs") {
                let span = meta.path.span();
                let mut names = Vec::new();
                if !meta.input.peek(syn::token::Paren) {
                    errors.at(&meta.path, "`inputs` lists the inputs' names: write `inputs(image, meta)`");
                    return skip_value(&meta);
                }
                let content;
                syn::parenthesized!(content in meta.input);
                let listed =
                    syn::punctuated::Punctuated::<Ident, syn::Token![,]>::parse_terminated(&content)
                        .map_err(|e| {
                            syn::Error::new(
                                e.span(),
                                "an input is named by an identifier: `inputs(image, meta)`",
                            )
                        })?;
                names.extend(listed);
                given_once(&mut inputs, (names, span), &meta.path, "#[multi_output]", errors);
                return Ok(());
            }
            if !meta.path.is_ident("term") {
                errors.at(
                    &meta.path,
                    format!(
                        "unknown key `{}` in #[multi_output]; expected `element = <type>`, `inputs(...)`, `forward = path` or `term(name = \"...\", weight = ..., with = path)`",
                        key_name(&meta.path)
                    ),
                );
                return skip_value(&meta);
            }
            let (mut name, mut weight, mut with) = (None, None, None);
            let span = meta.path.span();
            meta.parse_nested_meta(|inner| {
                if inner.path.is_ident("name") {
                    let lit = value(&inner, "name = \"...\"")?.parse::<LitStr>()?;
                    given_once(&mut name, lit, &inner.path, "term(...)", errors);
                } else if inner.path.is_ident("weight") {
                    let expr: Expr = value(&inner, "weight = <number>")?.parse()?;
                    let parsed = number(&expr, errors);
                    given_once(&mut weight, parsed, &inner.path, "term(...)", errors);
                } else if inner.path.is_ident("with") {
                    let path = value(&inner, "with = path::to::function")?.parse::<Path>()?;
                    given_once(&mut with, path, &inner.path, "term(...)", errors);
                } else {
                    errors.at(
                        &inner.path,
                        format!(
                            "unknown key `{}` in term(...); expected `name`, `weight` or `with`",
                            key_name(&inner.path)
                        ),
                    );
                    skip_value(&inner)?;
                }
                Ok(())
            })?;
            let weight = weight.flatten();
            if let Some(n) = &name
                && syn::parse_str::<Ident>(&n.value()).is_err()
            {
                errors.at(n, "a term's name must be a Rust identifier (it names a field of the generated LossWeights)");
                return Ok(());
            }
            match (name, with) {
                (Some(name), Some(with)) => terms.push(Term {
                    name,
                    weight: weight.unwrap_or(1.0),
                    with,
                }),
                _ => errors.push(syn::Error::new(span, "a term needs `name = \"...\"` and `with = path::to::function`")),
            }
            Ok(())
        });
        if let Err(e) = result {
            errors.push(e);
        }
    }
    StructAttrs {
        terms,
        element,
        inputs,
        forward,
    }
}

/// Stores a key's value, or reports a key given twice (at its second
/// occurrence) and keeps the first.
fn given_once<V>(slot: &mut Option<V>, value: V, key: &Path, place: &str, errors: &mut Errors) {
    if slot.is_some() {
        errors.at(
            key,
            format!("`{}` is given twice in {place}; keep one", key_name(key)),
        );
    } else {
        *slot = Some(value);
    }
}

/// A key as written (`wieght`, or `a::b` for a path).
fn key_name(path: &Path) -> String {
    path.segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect::<Vec<_>>()
        .join("::")
}

/// The value after `key =`, or an error at the key saying how to write it.
fn value<'a>(
    meta: &'a syn::meta::ParseNestedMeta<'a>,
    form: &str,
) -> syn::Result<&'a syn::parse::ParseBuffer<'a>> {
    if meta.input.peek(syn::Token![=]) {
        meta.value()
    } else {
        Err(syn::Error::new_spanned(
            &meta.path,
            format!("`{}` needs a value: write `{form}`", key_name(&meta.path)),
        ))
    }
}

/// Reads past an unknown key's value (`= expr` or `(...)`), so the keys
/// after it are still read and its value causes no second error.
fn skip_value(meta: &syn::meta::ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(syn::Token![=]) {
        meta.value()?.parse::<Expr>()?;
    } else if meta.input.peek(syn::token::Paren) {
        let content;
        syn::parenthesized!(content in meta.input);
        content.parse::<proc_macro2::TokenStream>()?;
    }
    Ok(())
}
