//! Leader election for high availability: a lease item in a DynamoDB table,
//! taken and renewed with conditional writes. Only the holder writes to AWS;
//! the others keep observing and take over once the lease expires.
//!
//! Replicas compare expiry times from their own clocks, so clocks must agree
//! to well within the lease duration (NTP does that).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus};
use aws_sdk_dynamodb::Client;

use crate::aws::{found, wait_for, AwsError, AwsResult, Built, CallCounter};

const KEY: &str = "lease";

/// One replica's handle on the lease.
pub struct Lease {
    client: Client,
    table: String,
    name: String,
    holder: String,
    duration: Duration,
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)).unwrap_or(0)
}

impl Lease {
    /// A lease `name` in `table`, held for `duration` at a time by `holder`.
    pub fn new(config: &SdkConfig, counter: &CallCounter, table: &str, name: &str, holder: &str, duration: Duration) -> Self {
        let client = crate::sdk_client!(aws_sdk_dynamodb, config, counter);
        Lease { client, table: table.into(), name: name.into(), holder: holder.into(), duration }
    }

    /// How often the holder renews: a third of the duration.
    pub fn renew_every(&self) -> Duration {
        self.duration / 3
    }

    /// Creates the lease table if it does not exist yet.
    pub async fn ensure_table(&self) -> Result<(), AwsError> {
        if found(self.client.describe_table().table_name(&self.table).send().await.aws("DynamoDB.DescribeTable"))?.is_some() {
            return Ok(());
        }
        let key = KeySchemaElement::builder().attribute_name(KEY).key_type(KeyType::Hash).build().built("DynamoDB.CreateTable")?;
        let attribute = AttributeDefinition::builder().attribute_name(KEY).attribute_type(ScalarAttributeType::S).build().built("DynamoDB.CreateTable")?;
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .key_schema(key)
            .attribute_definitions(attribute)
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await;
        match created.aws("DynamoDB.CreateTable") {
            Err(e) if e.code.as_deref() != Some("ResourceInUseException") => return Err(e),
            _ => {}
        }
        wait_for("DynamoDB.DescribeTable", Duration::from_secs(300), || async {
            let out = self.client.describe_table().table_name(&self.table).send().await.aws("DynamoDB.DescribeTable")?;
            Ok((out.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active)).then_some(()))
        })
        .await
    }

    /// Takes or renews the lease: succeeds when it is free, expired, or already ours.
    pub async fn try_acquire(&self) -> Result<bool, AwsError> {
        let now = now_ms();
        let expires = now + i64::try_from(self.duration.as_millis()).unwrap_or(i64::MAX / 2);
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(KEY, AttributeValue::S(self.name.clone()))
            .item("holder", AttributeValue::S(self.holder.clone()))
            .item("expires", AttributeValue::N(expires.to_string()))
            .condition_expression("attribute_not_exists(#k) OR expires < :now OR holder = :me")
            .expression_attribute_names("#k", KEY)
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .expression_attribute_values(":me", AttributeValue::S(self.holder.clone()))
            .send()
            .await;
        match result.aws("DynamoDB.PutItem") {
            Ok(_) => Ok(true),
            Err(e) if e.code.as_deref() == Some("ConditionalCheckFailedException") => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the lease up (on shutdown), so another replica takes over at once.
    pub async fn release(&self) -> Result<(), AwsError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(KEY, AttributeValue::S(self.name.clone()))
            .condition_expression("holder = :me")
            .expression_attribute_values(":me", AttributeValue::S(self.holder.clone()))
            .send()
            .await;
        match result.aws("DynamoDB.DeleteItem") {
            Err(e) if e.code.as_deref() != Some("ConditionalCheckFailedException") => Err(e),
            _ => Ok(()),
        }
    }
}
