//! The JSON Schema of a `PrestaShopStack` document, generated from the model so it cannot
//! drift from what the loader accepts. `presta-reconciler schema` prints it and
//! `docs/presta-stack.schema.json` keeps a copy for editors (a test keeps the two equal).

use std::sync::OnceLock;

use serde_json::{Value, json};

use crate::model::Stack;

/// Where editors can refer to the schema (also its `$id`).
pub const SCHEMA_ID: &str =
    "https://presta-reconciler.io/schemas/v1alpha1/presta-stack.schema.json";

/// The schema, as JSON.
pub fn json_schema() -> Value {
    let schema = schemars::schema_for!(Stack);
    let mut value = serde_json::to_value(schema).expect("a generated schema serialises");
    if let Value::Object(map) = &mut value {
        map.insert("$id".into(), json!(SCHEMA_ID));
        map.insert(
            "description".into(),
            json!("One PrestaShop shop on AWS, kept as declared by presta-reconciler. A file may hold several documents separated by `---`."),
        );
        // Editors cannot know the constant values from the Rust types: say them here.
        if let Some(Value::Object(props)) = map.get_mut("properties") {
            props.insert("apiVersion".into(), json!({"const": crate::defaults::API_VERSION, "description": "Always `presta-reconciler.io/v1alpha1`."}));
            props.insert(
                "kind".into(),
                json!({"const": crate::defaults::KIND, "description": "Always `PrestaShopStack`."}),
            );
        }
    }
    value
}

/// The schema as pretty JSON text with a trailing newline (the form kept in `docs/`).
pub fn json_schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&json_schema()).expect("JSON serialises");
    text.push('\n');
    text
}

/// The compiled validator, built once.
pub(crate) fn validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        jsonschema::validator_for(&json_schema())
            .expect("the generated schema is a valid JSON Schema")
    })
}

/// The sub-schema describing the value at `pointer` (a JSON pointer into an instance),
/// following `$ref`s and the non-null branch of nullable unions. Used to list the fields
/// allowed where an unknown one was found.
pub(crate) fn schema_at<'a>(root: &'a Value, segments: &[String]) -> Option<&'a Value> {
    let mut current = resolve(root, root)?;
    for seg in segments {
        current = if let Some(props) = current.get("properties") {
            resolve(root, props.get(seg)?)?
        } else if let Some(items) = current.get("items") {
            resolve(root, items)?
        } else {
            return None;
        };
    }
    Some(current)
}

fn resolve<'a>(root: &'a Value, mut schema: &'a Value) -> Option<&'a Value> {
    for _ in 0..16 {
        if let Some(Value::String(r)) = schema.get("$ref") {
            let path = r.strip_prefix("#/")?;
            schema = path.split('/').try_fold(root, |v, seg| v.get(seg))?;
            continue;
        }
        let branches = schema.get("anyOf").or_else(|| schema.get("oneOf"));
        if let Some(Value::Array(options)) = branches {
            schema = options
                .iter()
                .find(|o| o.get("type") != Some(&json!("null")))?;
            continue;
        }
        return Some(schema);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_forbids_unknown_fields_and_names_defaults() {
        let schema = json_schema();
        let db = schema_at(&schema, &["spec".into(), "database".into()]).unwrap();
        assert_eq!(db["additionalProperties"], json!(false));
        assert_eq!(db["properties"]["engineVersion"]["default"], json!("8.4"));
        assert_eq!(
            db["properties"]["deletionProtection"]["default"],
            json!(true)
        );
        let fs = schema_at(&schema, &["spec".into(), "fileSystem".into()]).unwrap();
        assert_eq!(
            fs["properties"]["throughputMode"]["default"],
            json!("elastic")
        );
    }

    #[test]
    fn required_fields_are_the_ones_without_defaults() {
        let schema = json_schema();
        let spec = schema_at(&schema, &["spec".into()]).unwrap();
        let required: Vec<&str> = spec["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(required, ["region", "network", "compute", "prestashop"]);
    }
}
