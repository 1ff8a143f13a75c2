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
    let (terms, element) = parse_struct_attrs(&input.attrs, &mut errors);
    let element = element
        .or_else(|| float_param(input))
        .unwrap_or_else(|| syn::parse_quote!(f32));
    let mut trunk: Option<Part<'_>> = None;
    let mut heads = Vec::new();
    for field in fields.into_iter().flatten() {
        let ident = field.ident.as_ref().expect("named field");
        let docs: Vec<&Attribute> = field
            .attrs
            .iter()
            .filter(|a| a.path().is_ident("doc"))
            .collect();
        let mut is_trunk = false;
        let mut head: Option<Option<HeadLoss>> = None;
        for attr in &field.attrs {
            if attr.path().is_ident("trunk") {
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
    errors.finish()?;
    Ok(Model {
        input,
        element,
        trunk,
        heads,
        terms,
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
            loss = Some(meta.value()?.parse::<Expr>()?);
        } else if meta.path.is_ident("weight") {
            let expr: Expr = meta.value()?.parse()?;
            weight = Some((number(&expr, errors), expr));
        } else if meta.path.is_ident("target") {
            target = Some(meta.value()?.parse::<Type>()?);
        } else {
            let key = meta
                .path
                .get_ident()
                .map(|i| i.to_string())
                .unwrap_or_default();
            errors.at(
                &meta.path,
                format!("unknown key `{key}` in #[head]; expected `loss`, `weight` or `target`"),
            );
            // Skip its value so the other keys are still read.
            if meta.input.peek(syn::Token![=]) {
                meta.value()?.parse::<Expr>()?;
            }
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

/// `#[multi_output(element = f64, term(name = "...", weight = ..., with = path))]`.
fn parse_struct_attrs(attrs: &[Attribute], errors: &mut Errors) -> (Vec<Term>, Option<Type>) {
    let mut terms = Vec::new();
    let mut element = None;
    for attr in attrs.iter().filter(|a| a.path().is_ident("multi_output")) {
        let result = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("element") {
                element = Some(meta.value()?.parse::<Type>()?);
                return Ok(());
            }
            if !meta.path.is_ident("term") {
                errors.at(&meta.path, "unknown key in #[multi_output]; expected `element = <type>` or `term(name = \"...\", weight = ..., with = path)`");
                return Ok(());
            }
            let (mut name, mut weight, mut with) = (None, None, None);
            let span = meta.path.span();
            meta.parse_nested_meta(|inner| {
                if inner.path.is_ident("name") {
                    name = Some(inner.value()?.parse::<LitStr>()?);
                } else if inner.path.is_ident("weight") {
                    let expr: Expr = inner.value()?.parse()?;
                    weight = number(&expr, errors);
                } else if inner.path.is_ident("with") {
                    with = Some(inner.value()?.parse::<Path>()?);
                } else {
                    errors.at(&inner.path, "unknown key in term(...); expected `name`, `weight` or `with`");
                }
                Ok(())
            })?;
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
    (terms, element)
}
