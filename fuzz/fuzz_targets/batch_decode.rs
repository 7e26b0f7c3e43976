//! `Batch::decode` on arbitrary bytes, as given and with length and CRC fixed up:
//! never panics; an accepted batch iterates to its record count and re-encodes to
//! the same bytes. See `replog::fuzz_support::batch_decode`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| replog::fuzz_support::batch_decode(data));
