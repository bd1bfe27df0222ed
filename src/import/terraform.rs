//! `import --from-terraform FILE`: the resources of a Terraform state
//! (format version 4) as the stack resources the rest of `import` reads —
//! each managed `aws_*` instance with its Terraform name as logical id and
//! its `id` attribute as physical id (a VPC's `vpc-…`, a queue's URL, a
//! table's name, an Elastic IP's allocation id). Data sources are not
//! resources of the estate and deposed objects (about to be destroyed) not
//! the estate's any more: both are skipped; types no kind stands for are
//! listed by the caller like a stack's.

use std::path::Path;

use serde::Deserialize;

use super::{ImportError, StackResource};

/// The largest state read (a state of thousands of resources is a few MiB).
const MAX_STATE_BYTES: u64 = 64 * 1024 * 1024;

/// A Terraform state, the parts `import` reads.
#[derive(Deserialize)]
struct State {
    version: u32,
    #[serde(default)]
    resources: Vec<Resource>,
}

/// One resource block of the state.
#[derive(Deserialize)]
struct Resource {
    /// `managed` or `data`.
    mode: String,
    /// `aws_vpc`, …
    #[serde(rename = "type")]
    resource_type: String,
    /// The block's name (`aws_vpc.main`: `main`).
    name: String,
    /// The module holding it (`module.network`), if any.
    module: Option<String>,
    #[serde(default)]
    instances: Vec<Instance>,
}

/// One instance of a resource block (one per `count` index or `for_each` key).
#[derive(Deserialize)]
struct Instance {
    /// The `count` index or `for_each` key.
    index_key: Option<serde_json::Value>,
    #[serde(default)]
    attributes: serde_json::Map<String, serde_json::Value>,
    /// Set on an object Terraform is about to destroy (replaced by another).
    deposed: Option<String>,
}

/// The resources of the state at `path`, and the source they are listed under.
pub fn resources(path: &Path) -> Result<(String, Vec<StackResource>), ImportError> {
    let invalid = |why: String| ImportError::Input(format!("{}: {why}", path.display()));
    let metadata = std::fs::metadata(path).map_err(|e| invalid(e.to_string()))?;
    if !metadata.is_file() {
        return Err(invalid("not a regular file; a state is a file".into()));
    }
    // Read through a limit too: the size checked is not the size read if the file grows.
    let mut bytes = Vec::new();
    let file = std::fs::File::open(path).map_err(|e| invalid(e.to_string()))?;
    std::io::Read::read_to_end(&mut std::io::Read::take(file, MAX_STATE_BYTES + 1), &mut bytes).map_err(|e| invalid(e.to_string()))?;
    if bytes.len() as u64 > MAX_STATE_BYTES {
        return Err(invalid(format!("more than {MAX_STATE_BYTES} bytes; the limit")));
    }
    let text = String::from_utf8(bytes).map_err(|_| invalid("not UTF-8 text".into()))?;
    let source = format!("terraform state {}", path.display());
    parse(&text, &source).map_err(|e| match e {
        ImportError::Input(why) => ImportError::Input(format!("{}:{why}", path.display())),
        other => other,
    })
}

/// The resources of state `text`, listed under `source`; errors start with `line:col: `.
fn parse(text: &str, source: &str) -> Result<(String, Vec<StackResource>), ImportError> {
    let state: State = serde_json::from_str(text).map_err(|e| ImportError::Input(format!("{}:{}: not a Terraform state: {e}", e.line(), e.column())))?;
    if state.version != 4 {
        return Err(ImportError::Input(format!("1:1: state format version {}; import reads version 4 (Terraform 0.12 and later)", state.version)));
    }
    let mut found = Vec::new();
    for r in state.resources.iter().filter(|r| r.mode == "managed") {
        for instance in r.instances.iter().filter(|i| i.deposed.is_none()) {
            let key = match &instance.index_key {
                None => String::new(),
                Some(serde_json::Value::String(k)) => format!("_{k}"),
                Some(other) => format!("_{other}"),
            };
            let address = format!("{}{}.{}{}", r.module.as_deref().map(|m| format!("{m}.")).unwrap_or_default(), r.resource_type, r.name, key);
            let Some(id) = instance.attributes.get("id").and_then(serde_json::Value::as_str).filter(|id| !id.is_empty()) else {
                return Err(ImportError::Input(format!("1:1: {address} has no id attribute (a state written by Terraform always has one)")));
            };
            found.push(StackResource {
                stack: source.to_string(),
                logical_id: format!("{}{key}", r.name),
                physical_id: id.to_string(),
                resource_type: r.resource_type.clone(),
            });
        }
    }
    Ok((source.to_string(), found))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn managed_instances_become_resources_and_data_sources_and_deposed_objects_do_not() {
        let state = r#"{"version": 4, "terraform_version": "1.9.0", "resources": [
            {"mode": "data", "type": "aws_ami", "name": "ecs", "instances": [{"attributes": {"id": "ami-1"}}]},
            {"mode": "managed", "type": "aws_vpc", "name": "main", "instances": [{"attributes": {"id": "vpc-1", "cidr_block": "10.0.0.0/16"}}]},
            {"mode": "managed", "type": "aws_subnet", "name": "private", "module": "module.network",
             "instances": [{"index_key": 0, "attributes": {"id": "subnet-1"}}, {"index_key": "b", "attributes": {"id": "subnet-2"}},
                           {"index_key": "b", "deposed": "00000001", "attributes": {"id": "subnet-being-destroyed"}}]}
        ]}"#;
        let (source, found) = parse(state, "terraform state s.json").expect("a state");
        assert_eq!(source, "terraform state s.json");
        let seen: Vec<(&str, &str, &str)> = found.iter().map(|r| (r.resource_type.as_str(), r.logical_id.as_str(), r.physical_id.as_str())).collect();
        assert_eq!(seen, [("aws_vpc", "main", "vpc-1"), ("aws_subnet", "private_0", "subnet-1"), ("aws_subnet", "private_b", "subnet-2")]);
    }

    #[test]
    fn what_is_not_a_version_4_state_is_refused_with_where() {
        let error = |text: &str| parse(text, "s").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error("{\"version\": 4,\n \"resources\": [}").starts_with("2:16: not a Terraform state"), "{}", error("{\"version\": 4,\n \"resources\": [}"));
        assert!(error(r#"{"version": 3, "modules": []}"#).contains("format version 3; import reads version 4"));
        let no_id = r#"{"version": 4, "resources": [{"mode": "managed", "type": "aws_vpc", "name": "main", "instances": [{"attributes": {}}]}]}"#;
        assert!(error(no_id).contains("aws_vpc.main has no id attribute"), "{}", error(no_id));
    }
}
