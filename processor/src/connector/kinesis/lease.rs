//! The lease table: one DynamoDB item per shard, shared by every replica.
//!
//! An item holds `leaseKey` (the shard id), `leaseOwner`, `leaseCounter`,
//! `checkpoint` (the last sequence number whose results are durable, or
//! `SHARD_END`), `parentShardIds` and `shardIndex`. As in the Kinesis
//! Client Library, every change of ownership and every renewal is a
//! conditional write on the counter the writer last saw, so two workers
//! never both believe they won; and expiry needs no synchronized clocks:
//! a worker calls a lease expired when its counter has not moved for a
//! lease duration of its own clock.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ReturnValue,
    ScalarAttributeType, TableStatus,
};

use super::KinesisError;
use super::shards::ShardInfo;

/// The checkpoint of a shard read to its end.
pub const SHARD_END: &str = "SHARD_END";

/// One lease item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The shard and its parents.
    pub shard: ShardInfo,
    /// Who holds it.
    pub owner: Option<String>,
    /// Bumped by every renewal and change of owner.
    pub counter: i64,
    /// A sequence number, [`SHARD_END`], or nothing yet.
    pub checkpoint: Option<String>,
}

impl Lease {
    /// Whether the shard was read to its end and checkpointed there.
    #[must_use]
    pub fn finished(&self) -> bool {
        self.checkpoint.as_deref() == Some(SHARD_END)
    }
}

/// The result of a conditional write.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome<T> {
    /// It was written.
    Done(T),
    /// Another worker changed the item first.
    Lost,
}

impl<T> Outcome<T> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> Outcome<U> {
        match self {
            Self::Done(v) => Outcome::Done(f(v)),
            Self::Lost => Outcome::Lost,
        }
    }
}

/// A lease table.
#[derive(Clone)]
pub struct LeaseTable {
    client: Client,
    table: String,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn api<E, R>(call: &'static str, e: &aws_sdk_dynamodb::error::SdkError<E, R>) -> KinesisError
where
    E: std::error::Error + aws_sdk_dynamodb::error::ProvideErrorMetadata + 'static,
    R: std::fmt::Debug,
{
    KinesisError::api(call, e)
}

/// Whether a write failed on its condition (and not for another reason).
fn condition_failed<E, R>(e: &aws_sdk_dynamodb::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    e.as_service_error()
        .and_then(aws_sdk_dynamodb::error::ProvideErrorMetadata::code)
        == Some("ConditionalCheckFailedException")
}

/// Reads a lease from an item; items without a key are skipped.
fn parse(item: &HashMap<String, AttributeValue>) -> Option<Lease> {
    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    let key = text("leaseKey")?;
    let counter = item
        .get("leaseCounter")
        .and_then(|v| v.as_n().ok())
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let parents = item
        .get("parentShardIds")
        .and_then(|v| v.as_l().ok())
        .map(|l| l.iter().filter_map(|p| p.as_s().ok().cloned()).collect())
        .unwrap_or_default();
    Some(Lease {
        shard: ShardInfo { id: key, parents },
        owner: text("leaseOwner"),
        counter,
        checkpoint: text("checkpoint"),
    })
}

impl LeaseTable {
    /// The table `table` through `client`.
    #[must_use]
    pub fn new(client: Client, table: String) -> Self {
        Self { client, table }
    }

    /// Creates the table unless it exists and waits until it is active.
    ///
    /// # Errors
    /// When DynamoDB refuses, or the table stays inactive for a minute.
    pub async fn ensure(&self) -> Result<(), KinesisError> {
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("leaseKey")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(|e| KinesisError::Api {
                        call: "CreateTable",
                        message: e.to_string(),
                    })?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("leaseKey")
                    .key_type(KeyType::Hash)
                    .build()
                    .map_err(|e| KinesisError::Api {
                        call: "CreateTable",
                        message: e.to_string(),
                    })?,
            )
            .send()
            .await;
        if let Err(e) = created {
            // Another replica (or an earlier run) created it.
            let exists = e
                .as_service_error()
                .is_some_and(|s| s.is_resource_in_use_exception());
            if !exists {
                return Err(api("CreateTable", &e));
            }
        }
        for _ in 0..600 {
            let d = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(|e| api("DescribeTable", &e))?;
            if d.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(KinesisError::Api {
            call: "DescribeTable",
            message: format!("table {} is not ACTIVE after a minute", self.table),
        })
    }

    /// Every lease, read consistently.
    ///
    /// # Errors
    /// When the scan fails.
    pub async fn scan(&self) -> Result<Vec<Lease>, KinesisError> {
        let mut out = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| api("Scan", &e))?;
            out.extend(page.items().iter().filter_map(parse));
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(out),
            }
        }
    }

    /// Adds a lease for a newly discovered shard (nobody's yet); a lease
    /// that exists is left alone.
    ///
    /// # Errors
    /// When the write fails for another reason than existing.
    pub async fn create(&self, shard: &ShardInfo) -> Result<(), KinesisError> {
        let parents = shard.parents.iter().map(|p| s(p.as_str())).collect();
        let r = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("leaseKey", s(shard.id.as_str()))
            .item("leaseCounter", n(0))
            .item("parentShardIds", AttributeValue::L(parents))
            .item("shardIndex", n(i64::from(super::shards::index(&shard.id))))
            .condition_expression("attribute_not_exists(leaseKey)")
            .send()
            .await;
        match r {
            Err(e) if !condition_failed(&e) => Err(api("PutItem", &e)),
            _ => Ok(()),
        }
    }

    /// Renews a lease `me` holds at `counter`; the new counter, or
    /// [`Outcome::Lost`] when another worker took it.
    ///
    /// # Errors
    /// When the write fails for another reason.
    pub async fn renew(
        &self,
        key: &str,
        me: &str,
        counter: i64,
    ) -> Result<Outcome<i64>, KinesisError> {
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("leaseKey", s(key))
            .update_expression("SET leaseCounter = :next")
            .condition_expression("leaseOwner = :me AND leaseCounter = :seen")
            .expression_attribute_values(":next", n(counter + 1))
            .expression_attribute_values(":me", s(me))
            .expression_attribute_values(":seen", n(counter))
            .send()
            .await;
        Ok(outcome(r)?.map(|_| counter + 1))
    }

    /// Takes a lease last seen at `counter` (free, expired, or stolen);
    /// the lease as written, or [`Outcome::Lost`] when it moved meanwhile.
    ///
    /// # Errors
    /// When the write fails for another reason.
    pub async fn take(
        &self,
        key: &str,
        me: &str,
        counter: i64,
    ) -> Result<Outcome<Lease>, KinesisError> {
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("leaseKey", s(key))
            .update_expression("SET leaseOwner = :me, leaseCounter = :next")
            .condition_expression("leaseCounter = :seen")
            .expression_attribute_values(":next", n(counter + 1))
            .expression_attribute_values(":me", s(me))
            .expression_attribute_values(":seen", n(counter))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        Ok(match outcome(r)? {
            Outcome::Done(out) => out
                .attributes()
                .and_then(parse)
                .map_or(Outcome::Lost, Outcome::Done),
            Outcome::Lost => Outcome::Lost,
        })
    }

    /// Stores `checkpoint` in a lease `me` still holds; [`Outcome::Lost`]
    /// when it moved (the new owner re-reads from the older checkpoint).
    ///
    /// # Errors
    /// When the write fails for another reason.
    pub async fn checkpoint(
        &self,
        key: &str,
        me: &str,
        checkpoint: &str,
    ) -> Result<Outcome<()>, KinesisError> {
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("leaseKey", s(key))
            .update_expression("SET #cp = :cp")
            .condition_expression("leaseOwner = :me")
            .expression_attribute_names("#cp", "checkpoint")
            .expression_attribute_values(":cp", s(checkpoint))
            .expression_attribute_values(":me", s(me))
            .send()
            .await;
        Ok(outcome(r)?.map(|_| ()))
    }

    /// Gives a lease back (graceful shutdown): another worker may take it
    /// at once instead of waiting for it to expire.
    ///
    /// # Errors
    /// When the write fails for another reason than having moved.
    pub async fn release(&self, key: &str, me: &str) -> Result<(), KinesisError> {
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("leaseKey", s(key))
            .update_expression("REMOVE leaseOwner SET leaseCounter = leaseCounter + :one")
            .condition_expression("leaseOwner = :me")
            .expression_attribute_values(":me", s(me))
            .expression_attribute_values(":one", n(1))
            .send()
            .await;
        outcome(r).map(|_| ())
    }
}

/// An `UpdateItem` result as an [`Outcome`]: a failed condition means
/// another worker changed the lease first.
fn outcome<T, E, R>(
    r: Result<T, aws_sdk_dynamodb::error::SdkError<E, R>>,
) -> Result<Outcome<T>, KinesisError>
where
    E: std::error::Error + aws_sdk_dynamodb::error::ProvideErrorMetadata + 'static,
    R: std::fmt::Debug,
{
    match r {
        Ok(v) => Ok(Outcome::Done(v)),
        Err(e) if condition_failed(&e) => Ok(Outcome::Lost),
        Err(e) => Err(api("UpdateItem", &e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_become_leases() {
        let item: HashMap<String, AttributeValue> = [
            ("leaseKey".to_owned(), s("shardId-000000000002")),
            ("leaseOwner".to_owned(), s("replica-0")),
            ("leaseCounter".to_owned(), n(7)),
            ("checkpoint".to_owned(), s(SHARD_END)),
            (
                "parentShardIds".to_owned(),
                AttributeValue::L(vec![s("shardId-000000000000")]),
            ),
        ]
        .into();
        let l = parse(&item).unwrap();
        assert_eq!(l.shard.parents, ["shardId-000000000000"]);
        assert_eq!((l.owner.as_deref(), l.counter), (Some("replica-0"), 7));
        assert!(l.finished());
        assert!(parse(&HashMap::new()).is_none());
    }
}
