//! Little-endian encoding of metadata, with bounds-checked decoding: a damaged
//! image gives an error, never a panic.

/// Appends little-endian values to a byte vector.
#[derive(Debug, Default)]
pub(crate) struct Enc(pub(crate) Vec<u8>);

impl Enc {
    pub(crate) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub(crate) fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    /// A byte string of at most 65535 bytes, length first.
    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.u16(v.len() as u16);
        self.0.extend_from_slice(v);
    }
}

/// Reads little-endian values from a byte slice.
#[derive(Debug)]
pub(crate) struct Dec<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// Decoding ran past the end of its input.
pub(crate) const SHORT: &str = "a metadata structure ends before its last field";

impl<'a> Dec<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Dec { buf, pos: 0 }
    }
    pub(crate) fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        let end = self.pos.checked_add(n).ok_or(SHORT)?;
        let s = self.buf.get(self.pos..end).ok_or(SHORT)?;
        self.pos = end;
        Ok(s)
    }
    pub(crate) fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.take(1)?[0])
    }
    pub(crate) fn u16(&mut self) -> Result<u16, &'static str> {
        let mut a = [0; 2];
        a.copy_from_slice(self.take(2)?);
        Ok(u16::from_le_bytes(a))
    }
    pub(crate) fn u32(&mut self) -> Result<u32, &'static str> {
        let mut a = [0; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(a))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, &'static str> {
        let mut a = [0; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], &'static str> {
        let n = self.u16()? as usize;
        self.take(n)
    }
}

/// CRC-32C (Castagnoli), as NVMe and ext4/XFS metadata use it; sliced by
/// 16 bytes (a 16 KiB table), as every journal commit checksums a 4 KiB block.
pub(crate) fn crc32c(data: &[u8]) -> u32 {
    static CRC: crc::Crc<u32, crc::Table<16>> =
        crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISCSI);
    CRC.checksum(data)
}

#[cfg(test)]
mod tests {
    use super::crc32c;

    #[test]
    fn crc32c_is_castagnoli_at_every_length() {
        // The catalogue's check value.
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        // The sliced table agrees with the byte-wise one at every tail length.
        let bytewise = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
        let data: Vec<u8> = (0..4200u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for len in (0..64).chain([4095, 4096, 4200]) {
            assert_eq!(
                crc32c(&data[..len]),
                bytewise.checksum(&data[..len]),
                "length {len}"
            );
        }
    }
}
