//! Work items run `concurrency` at a time, their results handed on in item order.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};

use crate::error::Result;

/// Runs `work(0..n)` on up to `concurrency` threads and passes each result to `sink` in index
/// order, each as soon as every earlier one has been passed. The first error stops new work;
/// nothing after the failed index reaches `sink` (so an interrupted run keeps a prefix), and
/// the error is returned after the running items finish.
pub fn ordered<T: Send>(
    n: usize,
    concurrency: usize,
    work: &(dyn Fn(usize) -> Result<T> + Sync),
    sink: &mut dyn FnMut(T) -> Result<()>,
) -> Result<()> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let (tx, rx) = std::sync::mpsc::channel::<(usize, Result<T>)>();
    std::thread::scope(|scope| -> Result<()> {
        for _ in 0..concurrency.max(1).min(n) {
            let tx = tx.clone();
            let (next, failed) = (&next, &failed);
            scope.spawn(move || loop {
                if failed.load(SeqCst) {
                    break;
                }
                let i = next.fetch_add(1, SeqCst);
                if i >= n {
                    break;
                }
                let r = work(i);
                if r.is_err() {
                    failed.store(true, SeqCst);
                }
                if tx.send((i, r)).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        let mut pending: BTreeMap<usize, T> = BTreeMap::new();
        let mut first_error = None;
        let mut next_out = 0;
        for (i, r) in rx {
            match r {
                Ok(v) => {
                    pending.insert(i, v);
                }
                Err(e) => {
                    first_error.get_or_insert((i, e));
                }
            }
            // An error at item j leaves a gap there, so nothing after j is passed on.
            while let Some(v) = pending.remove(&next_out) {
                if let Err(e) = sink(v) {
                    failed.store(true, SeqCst);
                    first_error.get_or_insert((next_out, e));
                    pending.clear();
                    break;
                }
                next_out += 1;
            }
        }
        match first_error {
            Some((_, e)) => Err(e),
            None => Ok(()),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::AskError;

    #[test]
    fn results_arrive_in_order_whatever_finishes_first() {
        let mut got = Vec::new();
        let work = |i: usize| {
            // Later items finish first.
            std::thread::sleep(std::time::Duration::from_millis((20 - i as u64) * 2));
            Ok(i * 10)
        };
        ordered(20, 4, &work, &mut |v| {
            got.push(v);
            Ok(())
        })
        .unwrap();
        assert_eq!(got, (0..20).map(|i| i * 10).collect::<Vec<_>>());
    }

    #[test]
    fn an_error_keeps_the_prefix_before_it() {
        let mut got = Vec::new();
        let work = |i: usize| {
            if i == 5 {
                Err(AskError::input("item", "five"))
            } else {
                Ok(i)
            }
        };
        let e = ordered(50, 1, &work, &mut |v| {
            got.push(v);
            Ok(())
        })
        .unwrap_err();
        assert!(e.to_string().contains("five"));
        assert_eq!(got, vec![0, 1, 2, 3, 4]);
    }
}
