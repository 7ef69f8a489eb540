//! Buffers for large answers (fetched records), used again once every part of an answer is dropped.
//!
//! A fetch answer is read into one buffer, and the records handed on are slices of it; a batch's answers all live
//! until the batch is processed. A fresh buffer for each answer costs a page fault per 4 KiB page the first time
//! it is written, with the kernel zeroing every page: on the project's machine that was most of the fetch thread's
//! CPU (about 10 ms for the 12 MB of a million lab records) and took CPU from the processing thread. Buffers
//! returned here are handed out again with their pages in place. Idle buffers are bounded in bytes.

use bytes::Bytes;
use std::sync::{Arc, Mutex, Weak};

/// Answers smaller than this get a buffer of their own (small allocations are cheap).
pub const MIN_POOLED: usize = 64 << 10;

/// Most bytes of idle buffers a pool keeps (beyond them, a returned buffer is freed).
pub const MAX_IDLE_BYTES: usize = 32 << 20;

/// Idle buffers, for one connection.
#[derive(Debug)]
pub struct BufferPool {
    idle: Mutex<Idle>,
    max_idle: usize,
}

#[derive(Debug, Default)]
struct Idle {
    /// Whole buffers (length = capacity, every byte initialized), any order.
    bufs: Vec<Vec<u8>>,
    /// Their total length.
    bytes: usize,
    /// Buffers handed out again (for tests and traces).
    reused: u64,
}

/// A buffer of a pool: its first `len` bytes are the answer; it goes back to its pool when dropped.
#[derive(Debug)]
pub struct Pooled {
    buf: Vec<u8>,
    len: usize,
    pool: Weak<BufferPool>,
}

impl BufferPool {
    /// An empty pool keeping at most `max_idle` bytes of idle buffers.
    pub fn new(max_idle: usize) -> Arc<BufferPool> {
        Arc::new(BufferPool { idle: Mutex::new(Idle::default()), max_idle })
    }

    /// A buffer of `len` bytes (contents unspecified: old bytes of an earlier answer, or zeros): the smallest
    /// idle one that holds `len`, else a new one.
    pub fn take(self: &Arc<Self>, len: usize) -> Pooled {
        let reused = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let best = idle.bufs.iter().enumerate().filter(|(_, b)| b.len() >= len).min_by_key(|(_, b)| b.len());
            match best.map(|(i, _)| i) {
                Some(i) => {
                    let buf = idle.bufs.swap_remove(i);
                    idle.bytes -= buf.len();
                    idle.reused += 1;
                    Some(buf)
                }
                None => None,
            }
        };
        // A new buffer is rounded up to 64 KiB, so that answers of nearly the same size fit each other's.
        let buf = reused.unwrap_or_else(|| vec![0u8; len.next_multiple_of(MIN_POOLED)]);
        Pooled { buf, len, pool: Arc::downgrade(self) }
    }

    /// Bytes of idle buffers now.
    pub fn idle_bytes(&self) -> usize {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).bytes
    }

    /// How many buffers were handed out again so far.
    pub fn reused(&self) -> u64 {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).reused
    }

    fn give_back(&self, buf: Vec<u8>) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.bytes + buf.len() <= self.max_idle {
            idle.bytes += buf.len();
            idle.bufs.push(buf);
        }
    }
}

impl Pooled {
    /// The answer's bytes, to fill.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.buf[..self.len]
    }

    /// The answer as shared bytes; the buffer returns to its pool when the last slice of them is dropped.
    pub fn freeze(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.upgrade() {
            pool.give_back(std::mem::take(&mut self.buf));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_comes_back_once_every_slice_of_it_is_dropped_and_serves_a_smaller_answer() {
        let pool = BufferPool::new(4 << 20);
        let mut a = pool.take(300_000);
        a.as_mut_slice().fill(7);
        let addr = a.as_ref().as_ptr();
        let bytes = a.freeze();
        assert_eq!(bytes.len(), 300_000);
        let (head, tail) = (bytes.slice(..10), bytes.slice(299_990..));
        drop(bytes);
        drop(head);
        assert_eq!(pool.idle_bytes(), 0, "a slice still refers to it");
        assert_eq!(&tail[..], &[7u8; 10]);
        drop(tail);
        assert_eq!(pool.idle_bytes(), 300_000usize.next_multiple_of(MIN_POOLED));
        // A smaller answer gets the same memory; a larger one a new buffer.
        let b = pool.take(200_000);
        assert_eq!((b.as_ref().as_ptr(), b.as_ref().len(), pool.reused()), (addr, 200_000, 1));
        let c = pool.take(400_000);
        assert_ne!(c.as_ref().as_ptr(), addr);
        assert_eq!(pool.idle_bytes(), 0);
    }

    #[test]
    fn idle_buffers_are_bounded_and_the_smallest_that_fits_is_taken() {
        let pool = BufferPool::new(1 << 20);
        let taken: Vec<Pooled> = [100_000, 500_000, 300_000, 600_000].map(|n| pool.take(n)).into();
        let sizes: Vec<usize> = taken.iter().map(|p| p.buf.len()).collect();
        drop(taken);
        // 128 Ki + 512 Ki + 320 Ki fit in 1 MiB; the 576 Ki buffer is freed.
        assert_eq!(pool.idle_bytes(), sizes[0] + sizes[1] + sizes[2]);
        let p = pool.take(250_000);
        assert_eq!(p.buf.len(), sizes[2]);
        // A pool dropped before its buffers frees them.
        drop(pool);
        drop(p);
    }
}
