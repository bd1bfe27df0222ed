//! The reference to the lease table a spec may give (`leaseTable`): a table
//! name or a DynamoDB table ARN, which must be in the operator's region. The
//! spec checks it and the lease module uses it, so it lives with the spec.

/// Why a lease table reference is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TableReferenceError {
    /// The reference names a table of another region.
    #[error("the lease table {table} is in region {table_region}, the operator runs in {region}: give --region {table_region}, or a table in {region}")]
    OtherRegion {
        /// The reference as given.
        table: String,
        /// Its region.
        table_region: String,
        /// The operator's region.
        region: String,
    },
    /// The reference is neither a table name nor a DynamoDB table ARN.
    #[error("{0:?} is not a DynamoDB table name (3-255 of A-Z a-z 0-9 _ - .) or table ARN")]
    BadReference(String),
}

/// The table name in `reference` (a name or an ARN), checked against `region`.
pub fn table_name(reference: &str, region: &str) -> Result<String, TableReferenceError> {
    let valid = |name: &str| (3..=255).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
    if let Some(rest) = reference.strip_prefix("arn:") {
        let parts: Vec<&str> = rest.splitn(5, ':').collect();
        let name = match parts.as_slice() {
            [_, "dynamodb", _, _, resource] => resource.strip_prefix("table/").filter(|n| valid(n)),
            _ => None,
        };
        let Some(name) = name else { return Err(TableReferenceError::BadReference(reference.to_string())) };
        let table_region = parts[2];
        if table_region != region {
            return Err(TableReferenceError::OtherRegion { table: reference.to_string(), table_region: table_region.to_string(), region: region.to_string() });
        }
        return Ok(name.to_string());
    }
    if valid(reference) {
        Ok(reference.to_string())
    } else {
        Err(TableReferenceError::BadReference(reference.to_string()))
    }
}
