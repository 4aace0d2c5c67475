//! Fuzzing orbitmesh's readers on stable Rust: valid seed files mutated the ways damaged and
//! hostile files differ from good ones (bit flips, truncation, huge declared counts, NaN and
//! infinities, out-of-range indices, repeated chunks), each fed to a reader that must return a
//! value or an error: a panic fails the case, and proptest shrinks it to the smallest input.
//! [`CountingAllocator`] measures what a reader allocates, so a test can hold it to a bound set by
//! the file's size: a reader must not reserve memory for a count the data does not back.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

/// One change to a file. Positions are taken modulo the file's length at the time (so they
/// shrink towards its start).
#[derive(Debug, Clone)]
pub enum Mutation {
    FlipBit {
        at: usize,
        bit: u8,
    },
    Truncate {
        at: usize,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    /// The `nth` decimal number of a text file replaced by an extreme value.
    Number {
        nth: usize,
        value: &'static str,
    },
    /// Four bytes overwritten with an extreme little-endian integer (a count or an offset in a
    /// binary file).
    Word {
        at: usize,
        value: u32,
    },
    /// A chunk of the file repeated, as a duplicated block or an over-long list.
    Repeat {
        at: usize,
        len: u16,
        times: u8,
    },
}

/// Numbers a text format's counts, indices and coordinates are replaced with.
const EXTREME_NUMBERS: &[&str] = &[
    "0",
    "-1",
    "4294967295",
    "4294967296",
    "18446744073709551615",
    "99999999999999999999999",
    "2147483648",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "1e39",
    "-0",
    "1e-45",
];

const EXTREME_WORDS: &[u32] = &[
    0,
    1,
    0x7fff_ffff,
    0x8000_0000,
    u32::MAX,
    0x7fc0_0000,
    0x7f80_0000,
];

pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<usize>(), prop::sample::select(EXTREME_NUMBERS))
            .prop_map(|(nth, value)| Mutation::Number { nth, value }),
        (any::<usize>(), prop::sample::select(EXTREME_WORDS))
            .prop_map(|(at, value)| Mutation::Word { at, value }),
        (any::<usize>(), 1u16..256, 2u8..64).prop_map(|(at, len, times)| Mutation::Repeat {
            at,
            len,
            times
        }),
    ]
}

/// One to four mutations, applied in order.
pub fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(), 1..=4)
}

/// The byte ranges of the decimal numbers in `bytes` (with sign, fraction and exponent).
fn numbers(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let starts = bytes[i].is_ascii_digit()
            || (matches!(bytes[i], b'-' | b'+' | b'.')
                && bytes.get(i + 1).is_some_and(u8::is_ascii_digit));
        let after_word = i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if starts && !after_word {
            let start = i;
            i += 1;
            while i < bytes.len()
                && (bytes[i].is_ascii_digit()
                    || matches!(bytes[i], b'.' | b'e' | b'E')
                    || (matches!(bytes[i], b'-' | b'+') && matches!(bytes[i - 1], b'e' | b'E')))
            {
                i += 1;
            }
            found.push((start, i));
        } else {
            i += 1;
        }
    }
    found
}

pub fn apply(seed: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for m in mutations {
        let at = |i: &usize, len: usize| if len == 0 { 0 } else { i % len };
        match m {
            Mutation::FlipBit { at: i, bit } if !bytes.is_empty() => {
                let k = at(i, bytes.len());
                bytes[k] ^= 1 << bit;
            }
            Mutation::Truncate { at: i } => {
                let k = at(i, bytes.len());
                bytes.truncate(k);
            }
            Mutation::Insert { at: i, bytes: new } => {
                let k = at(i, bytes.len() + 1);
                bytes.splice(k..k, new.iter().copied());
            }
            Mutation::Number { nth, value } => {
                let found = numbers(&bytes);
                if !found.is_empty() {
                    let (s, e) = found[nth % found.len()];
                    bytes.splice(s..e, value.bytes());
                }
            }
            Mutation::Word { at: i, value } if bytes.len() >= 4 => {
                let k = at(i, bytes.len() - 3);
                bytes[k..k + 4].copy_from_slice(&value.to_le_bytes());
            }
            Mutation::Repeat { at: i, len, times } if !bytes.is_empty() => {
                let s = at(i, bytes.len());
                let e = (s + usize::from(*len)).min(bytes.len());
                let chunk = bytes[s..e].to_vec();
                let copies = chunk.repeat(usize::from(*times));
                bytes.splice(e..e, copies);
            }
            _ => {}
        }
    }
    bytes
}

/// Cases per reader: `ORBITMESH_FUZZ_CASES` (`scripts/fuzz.sh N`), else `default`.
pub fn cases(default: u32) -> u32 {
    std::env::var("ORBITMESH_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A runner with a fixed seed (the same cases every run) unless `ORBITMESH_FUZZ_SEED` names
/// another, and no failure files written into the source tree.
pub fn runner(cases: u32) -> TestRunner {
    let seed: u64 = std::env::var("ORBITMESH_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x0b17_3e54);
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 2048,
        ..Config::default()
    };
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &key))
}

/// Cases per reader in CI, where the whole slice takes seconds.
pub const CI_CASES: u32 = 300;
pub const MIB: usize = 1 << 20;

/// What a JSON or header reader may hold reading a `len`-byte file.
pub fn small_bound(len: usize) -> usize {
    64 * len + MIB
}

/// Runs the reader on every truncation of the seed (each length up to 512, then every 61st)
/// and on `cases(CI_CASES)` mutated copies; `write` puts the bytes where `read` reads them. A
/// panic, or more memory held at any moment than `bound` of the bytes, fails (needs
/// [`CountingAllocator`] installed to measure).
pub fn fuzz(
    name: &str,
    seed: &[u8],
    write: impl Fn(&[u8]) -> PathBuf,
    bound: impl Fn(&[u8]) -> usize,
    read: impl Fn(&Path) -> Result<(), String>,
) {
    let check = |bytes: &[u8]| -> Result<(), TestCaseError> {
        let path = write(bytes);
        let (_, peak) = peak_bytes(|| read(&path));
        let limit = bound(bytes);
        prop_assert!(
            peak <= limit,
            "{name}: held {peak} bytes reading a {}-byte file (bound {limit})",
            bytes.len()
        );
        Ok(())
    };
    let lengths = (0..seed.len().min(512)).chain((512..seed.len()).step_by(61));
    for len in lengths {
        if let Err(e) = check(&seed[..len]) {
            panic!("{name}, truncated to {len} bytes: {e}");
        }
    }
    let outcome = runner(cases(CI_CASES)).run(&mutations(), |m| check(&apply(seed, &m)));
    if let Err(e) = outcome {
        panic!("{name}: {e}");
    }
}

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

/// The system allocator, counting the bytes each thread holds and its peak. A test binary
/// installs it with `#[global_allocator]`. Memory freed on another thread than the one that
/// allocated it is counted against the freeing thread; the readers allocate and free on the
/// calling thread.
pub struct CountingAllocator;

fn held(delta: isize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call is passed to the system allocator unchanged; the counters touch only
// const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            held(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            held(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        held(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, size: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, layout, size) };
        if !q.is_null() {
            held(size as isize - layout.size() as isize);
        }
        q
    }
}

/// Runs `f` and returns its value with the most bytes this thread held above what it held
/// before, at any moment of the call (0 unless [`CountingAllocator`] is installed).
pub fn peak_bytes<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let value = f();
    let peak = PEAK.with(Cell::get) - base;
    (value, peak.max(0) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_found_whole_and_not_inside_words() {
        let text = b"v 1.5 -2e-3 +0.25\nf 1/2/3 x86 4\n";
        let found: Vec<&[u8]> = numbers(text).iter().map(|&(s, e)| &text[s..e]).collect();
        let expected: [&[u8]; 7] = [b"1.5", b"-2e-3", b"+0.25", b"1", b"2", b"3", b"4"];
        assert_eq!(found, expected);
    }

    #[test]
    fn mutations_change_what_they_say() {
        let seed = b"count 12\n";
        let nth = 0;
        let huge = apply(
            seed,
            &[Mutation::Number {
                nth,
                value: "4294967296",
            }],
        );
        assert_eq!(huge, b"count 4294967296\n");
        let at = 13;
        assert_eq!(apply(seed, &[Mutation::Truncate { at }]).len(), 4);
        let repeated = apply(
            b"ab",
            &[Mutation::Repeat {
                at: 0,
                len: 1,
                times: 3,
            }],
        );
        assert_eq!(repeated, b"aaaab");
    }
}
