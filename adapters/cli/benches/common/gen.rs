//! The lab benches' message generator.

use dstream_core::RecordBatch;

/// xorshift64*: the lab distribution (letter a-z, value 0-25), reproducible.
pub struct Gen(pub u64);
impl Gen {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn fill(&mut self, batch: &mut RecordBatch, first_offset: i64, n: usize) {
        batch.clear();
        let mut buf = [0u8; 8];
        for i in 0..n {
            let r = self.next();
            let key = b'a' + (r % 26) as u8;
            let v = ((r >> 32) % 26) as u8;
            buf[0] = key;
            buf[1] = b',';
            let len = if v >= 10 {
                buf[2] = b'0' + v / 10;
                buf[3] = b'0' + v % 10;
                4
            } else {
                buf[2] = b'0' + v;
                3
            };
            batch.push(0, first_offset + i as i64, 0, None, &buf[..len]);
        }
    }
}
