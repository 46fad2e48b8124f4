//! The fuzz driver, on the stable toolchain: replays a target's committed corpus, then feeds it
//! inputs made by mutating the corpus (bit flips, boundary bytes, inserted, deleted and spliced
//! runs, appended protobuf fields) and plain random bytes, drawn by proptest, which also shrinks a
//! crashing input to a small one before it reports it.
//!
//! A target answers each input with an outcome label (which branch the input reached: a message
//! kind, an error's field, a status code). The driver keeps the shortest input of every label;
//! with `DROIDFLEET_FUZZ_SAVE_CORPUS=1` it rewrites the corpus as exactly those inputs, one per
//! label, which is the minimised corpus that is committed.
//!
//! Environment: `DROIDFLEET_FUZZ_SECONDS` runs each target for that long (default: a short run
//! of [`SHORT_RUN_CASES`] inputs, which CI does through `cargo test`); `DROIDFLEET_FUZZ_SEED`
//! replays one run (the seed is printed).

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// Inputs per target in the short run that `cargo test` does.
pub(crate) const SHORT_RUN_CASES: u32 = 300;
/// Inputs per proptest round in a timed run (the clock is checked between rounds).
const ROUND_CASES: u32 = 2_000;
/// The longest input the driver makes: bigger than any message the targets accept.
const MAX_INPUT: usize = 4_096;

/// One edit of a corpus input.
#[derive(Clone, Debug)]
enum Mutation {
    FlipBit {
        at: usize,
        bit: u8,
    },
    SetByte {
        at: usize,
        value: u8,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    Delete {
        at: usize,
        len: usize,
    },
    /// Copies a run of another corpus input in.
    Splice {
        from: usize,
        at: usize,
        start: usize,
        len: usize,
    },
    /// Appends one protobuf field: a key (field number and wire type) and raw bytes.
    AppendField {
        field: u32,
        wire_type: u8,
        bytes: Vec<u8>,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    // The values parsers special-case: zero, the sign bit, all ones, varint continuation.
    let boundary = prop_oneof![
        Just(0u8),
        Just(1),
        Just(0x7f),
        Just(0x80),
        Just(0xff),
        any::<u8>()
    ];
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        (any::<usize>(), boundary).prop_map(|(at, value)| Mutation::SetByte { at, value }),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..24))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<usize>(), 1usize..32).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (any::<usize>(), any::<usize>(), any::<usize>(), 1usize..64).prop_map(
            |(from, at, start, len)| Mutation::Splice {
                from,
                at,
                start,
                len
            }
        ),
        (1u32..40, 0u8..6, prop::collection::vec(any::<u8>(), 0..24)).prop_map(
            |(field, wire_type, bytes)| Mutation::AppendField {
                field,
                wire_type,
                bytes
            }
        ),
    ]
}

/// What the driver feeds a target: a corpus input with edits, or random bytes.
#[derive(Clone, Debug)]
enum Recipe {
    Mutated { seed: usize, edits: Vec<Mutation> },
    Random(Vec<u8>),
}

fn recipe() -> impl Strategy<Value = Recipe> {
    prop_oneof![
        4 => (any::<usize>(), prop::collection::vec(mutation(), 0..6))
            .prop_map(|(seed, edits)| Recipe::Mutated { seed, edits }),
        1 => prop::collection::vec(any::<u8>(), 0..256).prop_map(Recipe::Random),
    ]
}

fn build(recipe: &Recipe, corpus: &[Vec<u8>]) -> Vec<u8> {
    let (seed, edits) = match recipe {
        Recipe::Random(bytes) => return bytes.clone(),
        Recipe::Mutated { seed, edits } => (seed, edits),
    };
    let mut input = corpus[seed % corpus.len()].clone();
    for edit in edits {
        let at = |at: usize, len: usize| at % (len + 1);
        match edit {
            Mutation::FlipBit { at: i, bit } if !input.is_empty() => {
                let i = i % input.len();
                input[i] ^= 1 << bit;
            }
            Mutation::SetByte { at: i, value } if !input.is_empty() => {
                let i = i % input.len();
                input[i] = *value;
            }
            Mutation::FlipBit { .. } | Mutation::SetByte { .. } => {}
            Mutation::Insert { at: i, bytes } => {
                let i = at(*i, input.len());
                input.splice(i..i, bytes.iter().copied());
            }
            Mutation::Delete { at: i, len } => {
                let i = at(*i, input.len());
                let end = (i + len).min(input.len());
                input.drain(i..end);
            }
            Mutation::Splice {
                from,
                at: i,
                start,
                len,
            } => {
                let other = &corpus[from % corpus.len()];
                let start = start % (other.len() + 1);
                let end = (start + len).min(other.len());
                let i = at(*i, input.len());
                input.splice(i..i, other[start..end].iter().copied());
            }
            Mutation::AppendField {
                field,
                wire_type,
                bytes,
            } => {
                put_varint(&mut input, u64::from(field << 3 | u32::from(*wire_type)));
                if *wire_type == 2 {
                    put_varint(&mut input, bytes.len() as u64);
                }
                input.extend_from_slice(bytes);
            }
        }
        input.truncate(MAX_INPUT);
    }
    input
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/corpus")
        .join(target)
}

/// Runs `target` over its corpus and then over mutated inputs; panics (failing the test) with the
/// shrunk input when the target panics on one.
pub(crate) fn fuzz(name: &str, seeds: Vec<Vec<u8>>, target: impl Fn(&[u8]) -> String) {
    let dir = corpus_dir(name);
    let mut corpus = seeds;
    if let Ok(entries) = std::fs::read_dir(&dir) {
        let mut files: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        files.sort();
        for file in files {
            corpus.push(std::fs::read(&file).expect("a corpus file reads"));
        }
    }
    assert!(!corpus.is_empty(), "{name}: no seed and no corpus");
    // The shortest input seen for every outcome label.
    let shortest: Mutex<BTreeMap<String, Vec<u8>>> = Mutex::new(BTreeMap::new());
    let record = |input: &[u8], label: String| {
        let mut shortest = shortest.lock().unwrap();
        let keep = shortest
            .get(&label)
            .is_none_or(|old| input.len() < old.len());
        if keep {
            shortest.insert(label, input.to_vec());
        }
    };
    for input in &corpus {
        record(input, target(input));
    }

    let seconds = std::env::var("DROIDFLEET_FUZZ_SECONDS").ok().map(|s| {
        s.parse::<u64>()
            .expect("DROIDFLEET_FUZZ_SECONDS: whole seconds")
    });
    let seed = std::env::var("DROIDFLEET_FUZZ_SEED")
        .ok()
        .map(|s| s.parse::<u64>().expect("DROIDFLEET_FUZZ_SEED: a number"))
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("fuzz {name}: seed {seed}, corpus {} inputs", corpus.len());
    let started = Instant::now();
    let budget = seconds.map(Duration::from_secs);
    let mut cases = 0u64;
    for round in 0u64.. {
        let round_cases = if budget.is_some() {
            ROUND_CASES
        } else {
            SHORT_RUN_CASES
        };
        let config = Config {
            cases: round_cases,
            failure_persistence: None,
            max_shrink_iters: 4_096,
            ..Config::default()
        };
        let rng_seed = seed.wrapping_add(round).to_le_bytes().repeat(4);
        let mut runner =
            TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &rng_seed));
        let outcome = runner.run(&recipe(), |recipe| {
            let input = build(&recipe, &corpus);
            let label = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| target(&input)))
                .map_err(|_| {
                TestCaseError::fail(format!("{name} panicked on input {input:02x?}"))
            })?;
            record(&input, label);
            Ok(())
        });
        if let Err(failure) = outcome {
            panic!("fuzz {name} (seed {seed}, round {round}): {failure}");
        }
        cases += u64::from(round_cases);
        match budget {
            Some(budget) if started.elapsed() < budget => {}
            _ => break,
        }
    }
    let shortest = shortest.into_inner().unwrap();
    eprintln!(
        "fuzz {name}: {cases} inputs in {:.1} s, no crash, {} outcome labels",
        started.elapsed().as_secs_f64(),
        shortest.len()
    );
    if std::env::var_os("DROIDFLEET_FUZZ_SAVE_CORPUS").is_some() {
        save_corpus(&dir, &shortest);
    }
}

/// Rewrites the corpus as the shortest input of every label, each named by a hash of its label.
fn save_corpus(dir: &PathBuf, shortest: &BTreeMap<String, Vec<u8>>) {
    if dir.exists() {
        std::fs::remove_dir_all(dir).expect("the old corpus is removed");
    }
    std::fs::create_dir_all(dir).expect("the corpus folder is created");
    for (label, input) in shortest {
        // FNV-1a: a stable file name for the label.
        let hash = label.bytes().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
        std::fs::write(dir.join(format!("{hash:016x}")), input).expect("a corpus file is written");
    }
    eprintln!("fuzz: wrote {} inputs to {}", shortest.len(), dir.display());
}
