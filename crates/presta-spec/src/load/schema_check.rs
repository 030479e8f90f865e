//! The JSON Schema pass of the loader: every structural problem of a document at once, each
//! turned into a finding with its dotted field path, and the invalid parts pruned so that the
//! typed pass can still report what it finds in the rest.

use jsonschema::error::{TypeKind, ValidationErrorKind};
use serde_json::Value;

use crate::position;
use crate::schema;
use crate::validate::Finding;

pub(super) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Removes the value at a dotted path (`a.b[1].c`), if present.
pub(super) fn prune(value: &mut Value, path: &str) {
    let Some(parent_path) = position::parent(path) else {
        return;
    };
    let leaf = &path[parent_path.len()..];
    let mut target = &mut *value;
    if !parent_path.is_empty() {
        for part in split_path(&parent_path) {
            let next = match (target, part) {
                (Value::Object(m), PathPart::Key(k)) => m.get_mut(&k),
                (Value::Array(a), PathPart::Index(i)) => a.get_mut(i),
                _ => None,
            };
            match next {
                Some(n) => target = n,
                None => return,
            }
        }
    }
    let leaf = leaf.trim_start_matches('.');
    match target {
        Value::Object(m) => {
            m.remove(leaf);
        }
        Value::Array(a) => {
            if let Some(i) = leaf
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<usize>()
                .ok()
                .filter(|i| *i < a.len())
            {
                a.remove(i);
            }
        }
        _ => {}
    }
}

pub(super) enum PathPart {
    Key(String),
    Index(usize),
}

pub(super) fn split_path(path: &str) -> Vec<PathPart> {
    let mut parts = Vec::new();
    for piece in path.split('.') {
        let mut rest = piece;
        if let Some(i) = rest.find('[') {
            if i > 0 {
                parts.push(PathPart::Key(rest[..i].to_string()));
            }
            rest = &rest[i..];
            while let Some(end) = rest.find(']') {
                if let Ok(n) = rest[1..end].parse() {
                    parts.push(PathPart::Index(n));
                }
                rest = &rest[end + 1..];
            }
        } else {
            parts.push(PathPart::Key(rest.to_string()));
        }
    }
    parts
}

/// Splits a JSON pointer into its unescaped segments.
pub(super) fn pointer_segments(pointer: &str) -> Vec<String> {
    pointer
        .split('/')
        .skip(1)
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect()
}

/// A JSON pointer as the dotted path people read: `/spec/x/0/y` → `spec.x[0].y`.
pub(super) fn dotted(instance: &Value, segments: &[String]) -> String {
    let mut path = String::new();
    let mut current = Some(instance);
    for seg in segments {
        match current {
            Some(Value::Array(items)) => {
                path.push_str(&format!("[{seg}]"));
                current = seg.parse::<usize>().ok().and_then(|i| items.get(i));
            }
            other => {
                path = position::join(&path, seg);
                current = other.and_then(|v| v.get(seg));
            }
        }
    }
    path
}

/// Problems the JSON Schema finds, with whether they point at a key (unknown field) or a
/// value.
pub(super) fn schema_findings(instance: &Value) -> Vec<(Finding, bool)> {
    let root_schema = schema::json_schema();
    let mut out = Vec::new();
    for error in schema::validator().iter_errors(instance) {
        collect(&root_schema, instance, &error, &mut out);
    }
    out.sort_by(|a, b| a.0.path.cmp(&b.0.path));
    out.dedup();
    out
}

pub(super) fn collect(
    root_schema: &Value,
    instance: &Value,
    error: &jsonschema::ValidationError<'_>,
    out: &mut Vec<(Finding, bool)>,
) {
    let segments = pointer_segments(error.instance_path().as_str());
    let path = dotted(instance, &segments);
    let value = error.instance();
    let finding = |path: String, message: String, help: Option<String>| Finding {
        path,
        message,
        help,
    };
    match error.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            for field in unexpected {
                out.push((unknown_field(root_schema, &segments, &path, field), true));
            }
        }
        ValidationErrorKind::Required { property } => {
            let field = property.as_str().unwrap_or_default();
            out.push((missing_field(root_schema, &segments, &path, field), true));
        }
        ValidationErrorKind::Type { kind } => {
            let message = format!(
                "expected {}, found {} `{}`",
                expected_type(kind),
                json_type(value),
                short(value)
            );
            out.push((finding(path, message, None), false));
        }
        ValidationErrorKind::Enum { options } => {
            let allowed: Vec<String> = options
                .as_array()
                .map(|a| a.iter().map(short).collect())
                .unwrap_or_default();
            let help = format!("allowed: {}", allowed.join(", "));
            let message = format!("`{}` is not allowed", short(value));
            out.push((finding(path, message, Some(help)), false));
        }
        ValidationErrorKind::Constant { expected_value } => {
            let help = format!("use `{}`", short(expected_value));
            let message = format!("`{}` is not allowed", short(value));
            out.push((finding(path, message, Some(help)), false));
        }
        ValidationErrorKind::Minimum { limit }
        | ValidationErrorKind::ExclusiveMinimum { limit } => {
            let help = format!("the minimum is {limit}");
            let message = format!("{} is too small", short(value));
            out.push((finding(path, message, Some(help)), false));
        }
        ValidationErrorKind::Maximum { limit }
        | ValidationErrorKind::ExclusiveMaximum { limit } => {
            let help = format!("the maximum is {limit}");
            let message = format!("{} is too large", short(value));
            out.push((finding(path, message, Some(help)), false));
        }
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => {
            // Nullable unions (`Option<Struct>`): report the errors of the non-null branch.
            let branch = context
                .iter()
                .find(|errs| !errs.iter().all(is_null_type_error));
            match branch {
                Some(errs) if !errs.is_empty() => {
                    for e in errs {
                        collect(root_schema, instance, e, out);
                    }
                }
                _ => out.push((finding(path, error.to_string(), None), false)),
            }
        }
        _ => out.push((finding(path, error.to_string(), None), false)),
    }
}

/// An error that only says "expected null": the null branch of a nullable union.
fn is_null_type_error(e: &jsonschema::ValidationError<'_>) -> bool {
    matches!(e.kind(), ValidationErrorKind::Type { kind: TypeKind::Single(t) } if t.to_string() == "null")
}

/// `unknown field `x``, with the closest allowed name when one is close enough.
fn unknown_field(root_schema: &Value, segments: &[String], path: &str, field: &str) -> Finding {
    let allowed: Vec<String> = schema::schema_at(root_schema, segments)
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    let suggestion = allowed
        .iter()
        .map(|a| {
            let score = strsim::jaro_winkler(&a.to_lowercase(), &field.to_lowercase());
            (score, a)
        })
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, a)| format!("did you mean `{a}`? "))
        .unwrap_or_default();
    Finding {
        path: position::join(path, field),
        message: format!("unknown field `{field}`"),
        help: Some(format!("{suggestion}allowed here: {}", allowed.join(", "))),
    }
}

/// `missing required field`, with the first line of the field's description as help.
fn missing_field(root_schema: &Value, segments: &[String], path: &str, field: &str) -> Finding {
    let description =
        schema::schema_at(root_schema, &[segments, &[field.to_string()][..]].concat())
            .and_then(|s| s.get("description"))
            .and_then(Value::as_str)
            .map(|d| d.lines().next().unwrap_or(d).to_string());
    let within = if path.is_empty() {
        String::new()
    } else {
        format!(" in `{path}`")
    };
    Finding {
        path: position::join(path, field),
        message: format!("missing required field `{field}`{within}"),
        help: description.map(|d| format!("add `{field}`: {d}")),
    }
}

/// The expected type(s) of a type error, in words (`a mapping or a list`).
fn expected_type(kind: &TypeKind) -> String {
    match kind {
        TypeKind::Single(t) => type_name(&t.to_string()),
        TypeKind::Multiple(set) => {
            let names: Vec<String> = set
                .iter()
                .filter(|t| t.to_string() != "null")
                .map(|t| type_name(&t.to_string()))
                .collect();
            names.join(" or ")
        }
    }
}

pub(super) fn type_name(t: &str) -> String {
    match t {
        "object" => "a mapping".into(),
        "array" => "a list".into(),
        "integer" => "an integer".into(),
        "number" => "a number".into(),
        "boolean" => "a boolean (true or false)".into(),
        "string" => "a string".into(),
        other => other.into(),
    }
}

pub(super) fn short(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}
