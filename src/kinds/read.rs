//! Reads every kind shares: the name filter that sees all of a kind's
//! resources, and describing listed resources a few at a time.

use futures::stream::{self, StreamExt, TryStreamExt};

use crate::aws::AwsError;

/// The longest prefix shared by all `names` (empty for none): the name filter
/// of a List/Describe call that must see every resource of a kind.
pub fn common_prefix<'a>(mut names: impl Iterator<Item = &'a str>) -> String {
    let Some(first) = names.next() else { return String::new() };
    let mut prefix = first.to_string();
    for name in names {
        let common = prefix.chars().zip(name.chars()).take_while(|(a, b)| a == b).count();
        prefix.truncate(prefix.char_indices().nth(common).map_or(prefix.len(), |(i, _)| i));
    }
    prefix
}

/// Describes each listed resource, at most `concurrency` at a time; those
/// that vanished since they were listed (`None`) are left out.
pub async fn describe_each<T, U, Fut>(listed: Vec<T>, concurrency: usize, describe: impl Fn(T) -> Fut) -> Result<Vec<U>, AwsError>
where
    Fut: std::future::Future<Output = Result<Option<U>, AwsError>>,
{
    let described: Vec<Option<U>> = stream::iter(listed).map(describe).buffer_unordered(concurrency).try_collect().await?;
    Ok(described.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::common_prefix;

    #[test]
    fn prefix_of_names() {
        assert_eq!(common_prefix(["/ecs/sentry-oms-dev", "/ecs/sentry-websocket-dev"].into_iter()), "/ecs/sentry-");
        // The SQS list filter: `sentry-` and the queue names.
        assert_eq!(common_prefix(["sentry-", "sentry-a-dev", "sentry-b-dev"].into_iter()), "sentry-");
        assert_eq!(common_prefix(["sentry-", "sentry-a-dev", "other"].into_iter()), "");
        assert_eq!(common_prefix(["sentry-"].into_iter()), "sentry-");
        assert_eq!(common_prefix(["a"].into_iter()), "a");
        assert_eq!(common_prefix(std::iter::empty()), "");
    }
}
