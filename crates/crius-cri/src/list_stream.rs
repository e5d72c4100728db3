//! The Stream* RPCs (kubelet feature gate CRIListStreaming): the same answer as the List*
//! RPC, sent in chunks so that no one message grows with the node's size.

use futures::Stream;
use tonic::Status;

/// Items per message: far below the 16 MiB message limit for any CRI item.
const CHUNK: usize = 256;

/// `items` as a stream of messages of at most [`CHUNK`] items each (none for an empty
/// list).
pub fn chunked<T, R>(
    items: Vec<T>,
    wrap: fn(Vec<T>) -> R,
) -> impl Stream<Item = Result<R, Status>> + Send + 'static
where
    T: Send + 'static,
    R: Send + 'static,
{
    let mut chunks = Vec::with_capacity(items.len().div_ceil(CHUNK));
    let mut rest = items;
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().min(CHUNK));
        chunks.push(Ok(wrap(rest)));
        rest = tail;
    }
    futures::stream::iter(chunks)
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    #[tokio::test]
    async fn a_list_is_sent_in_order_in_chunks() {
        let items: Vec<usize> = (0..CHUNK * 2 + 3).collect();
        let got: Vec<Vec<usize>> = chunked(items.clone(), |v| v)
            .map(|r| r.unwrap())
            .collect()
            .await;
        assert_eq!(
            got.iter().map(Vec::len).collect::<Vec<_>>(),
            [CHUNK, CHUNK, 3]
        );
        assert_eq!(got.concat(), items);
        let none: Vec<Vec<usize>> = chunked(Vec::<usize>::new(), |v| v)
            .map(|r| r.unwrap())
            .collect()
            .await;
        assert!(none.is_empty());
    }
}
