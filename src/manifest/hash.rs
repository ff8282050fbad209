//! Hashing: files under 4 MiB read and hashed one at a time; larger ones memory-mapped in
//! windows and hashed two per thread with their SHA-256 rounds interleaved.
use super::walk::Pending;
use super::*;
use sha256_lanes::{BLOCK, Lane};

pub(super) const MIB: usize = 1024 * 1024;
/// Read size per call for small files.
pub(super) const READ_BUFFER: usize = MIB;
/// Files at least this large are memory-mapped and hashed two per thread, their SHA-256 rounds
/// interleaved (the `sha256-lanes` crate); smaller ones are read and hashed one at a time.
pub(super) const PAIRED_MIN: u64 = 4 * MIB as u64;
/// Large files are hashed through memory maps of up to this size...
pub(super) const MAP_WINDOW: usize = 16 * MIB;
/// ...with all threads' windows together at most this (windows are at least 1 MiB, so past 16
/// threads it is 1 MiB a window), so memory stays flat on many cores.
pub(super) const MAP_BUDGET: usize = 32 * MIB;

/// Hashes every file, largest first, on one thread per core; returns them in path order.
pub(super) fn hash_files(
    files: Vec<Pending>,
    progress: &dyn HashProgress,
) -> Result<Vec<FileEntry>, ManifestError> {
    progress.begin(files.len(), files.iter().map(|f| f.size).sum());
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(files.len().max(1));
    let mut order: Vec<usize> = (0..files.len()).collect();
    order.sort_by(|a, b| files[*b].size.cmp(&files[*a].size));
    // Two windows per thread; whole MiB so every window starts on a page boundary.
    let window = (MAP_BUDGET / threads / 2).clamp(MIB, MAP_WINDOW) / MIB * MIB;
    let next = AtomicUsize::new(0);
    let take = || order.get(next.fetch_add(1, Ordering::Relaxed)).copied();
    let results: Mutex<Vec<Option<Result<String, ManifestError>>>> =
        Mutex::new((0..files.len()).map(|_| None).collect());
    let record = |index: usize, outcome: Result<String, ManifestError>| {
        if let Ok(mut results) = results.lock() {
            results[index] = Some(outcome);
        }
    };
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| hash_on_this_thread(&files, &take, &record, window, progress));
        }
    });
    progress.finish();
    let results = results.into_inner().unwrap_or_default();
    files
        .into_iter()
        .zip(results)
        .map(|(file, result)| {
            let digest = result.ok_or_else(|| ManifestError::Read {
                path: file.source.clone(),
                source: std::io::Error::other("not hashed"),
            })??;
            Ok(FileEntry {
                path: file.path,
                size: file.size,
                digest,
            })
        })
        .collect()
}

/// One hashing thread: takes files from the shared queue until it is empty. Large files are
/// hashed two at a time with their rounds interleaved, each pair refilled from the queue as
/// soon as one of them ends; small ones are read and hashed on their own.
fn hash_on_this_thread(
    files: &[Pending],
    take: &dyn Fn() -> Option<usize>,
    record: &dyn Fn(usize, Result<String, ManifestError>),
    window: usize,
    progress: &dyn HashProgress,
) {
    let mut buffer = vec![0u8; READ_BUFFER];
    let mut lanes: [Option<MappedFile>; 2] = [None, None];
    let mut queue_empty = false;
    loop {
        for lane in &mut lanes {
            while lane.is_none() && !queue_empty {
                let Some(index) = take() else {
                    queue_empty = true;
                    break;
                };
                let file = &files[index];
                if file.size < PAIRED_MIN {
                    record(
                        index,
                        read_and_hash(&file.source, file.size, &mut buffer, progress),
                    );
                    continue;
                }
                match MappedFile::open(index, file, window) {
                    Ok(mapped) => *lane = Some(mapped),
                    Err(error) => record(index, Err(error)),
                }
            }
        }
        let mut ready = [0usize; 2];
        let mut lane_ended = false;
        for (lane, ready) in lanes.iter_mut().zip(&mut ready) {
            let Some(file) = lane else { continue };
            match file.ready() {
                Ok(0) => {
                    if let Some(file) = lane.take() {
                        record(file.index, Ok(file.finish(progress)));
                    }
                    lane_ended = true;
                }
                Ok(length) => *ready = length,
                Err(error) => {
                    record(file.index, Err(error));
                    *lane = None;
                    lane_ended = true;
                }
            }
        }
        if lane_ended && !queue_empty {
            // Pair the survivor with the next file before hashing on.
            continue;
        }
        match &mut lanes {
            [Some(first), Some(second)] => {
                let length = ready[0].min(ready[1]);
                MappedFile::hash_pair(first, second, length);
                progress.advance(2 * length as u64);
            }
            [Some(only), None] | [None, Some(only)] => {
                let length = ready[0].max(ready[1]);
                only.hash_alone(length);
                progress.advance(length as u64);
            }
            [None, None] if queue_empty => break,
            [None, None] => {}
        }
    }
}

/// A large file being hashed one memory-mapped window at a time, straight from the page cache
/// (no copy); memory stays at one window per file in flight.
pub(super) struct MappedFile<'a> {
    index: usize,
    path: &'a Path,
    file: File,
    size: u64,
    window_size: usize,
    window: Option<memmap2::Mmap>,
    /// Where the current window starts in the file.
    window_offset: u64,
    /// Bytes of the current window already hashed.
    position: usize,
    lane: Lane,
}

impl<'a> MappedFile<'a> {
    pub(super) fn open(
        index: usize,
        listed: &'a Pending,
        window_size: usize,
    ) -> Result<Self, ManifestError> {
        let path = listed.source.as_path();
        let file = File::open(path).map_err(read_error(path))?;
        let size = file.metadata().map_err(read_error(path))?.len();
        if size != listed.size {
            return Err(ManifestError::Changed {
                path: path.to_path_buf(),
                listed: listed.size,
                hashed: size,
            });
        }
        Ok(Self {
            index,
            path,
            file,
            size,
            window_size,
            window: None,
            window_offset: 0,
            position: 0,
            lane: Lane::default(),
        })
    }

    /// How many bytes of whole blocks are ready in the current window, mapping the next window
    /// once this one is used up; 0 at the end, where a tail shorter than a block may be left
    /// for [`MappedFile::finish`].
    fn ready(&mut self) -> Result<usize, ManifestError> {
        loop {
            if let Some(window) = &self.window {
                let whole = window.len() - window.len() % BLOCK;
                if self.position < whole {
                    return Ok(whole - self.position);
                }
                let end = self.window_offset + window.len() as u64;
                if end >= self.size {
                    return Ok(0);
                }
                // Unmapped before the next is mapped, so memory stays at one window.
                self.window = None;
                self.window_offset = end;
            }
            if self.window_offset >= self.size {
                return Ok(0);
            }
            let length = (self.size - self.window_offset).min(self.window_size as u64) as usize;
            // SAFETY: the map is read-only and dropped before the next window. A file truncated
            // underneath would fault; models are not rewritten while they are being signed.
            #[allow(unsafe_code)]
            let window = unsafe {
                memmap2::MmapOptions::new()
                    .offset(self.window_offset)
                    .len(length)
                    .populate()
                    .map(&self.file)
            }
            .map_err(read_error(self.path))?;
            self.window = Some(window);
            self.position = 0;
        }
    }

    /// Hashes `length` ready bytes of each file, interleaved on this core.
    fn hash_pair(first: &mut Self, second: &mut Self, length: usize) {
        let (Some(first_window), Some(second_window)) = (&first.window, &second.window) else {
            unreachable!("bytes are ready only in a mapped window");
        };
        Lane::absorb_pair(
            &mut first.lane,
            &first_window[first.position..first.position + length],
            &mut second.lane,
            &second_window[second.position..second.position + length],
        );
        first.position += length;
        second.position += length;
    }

    /// Hashes `length` ready bytes of this file alone.
    fn hash_alone(&mut self, length: usize) {
        let Some(window) = &self.window else {
            unreachable!("bytes are ready only in a mapped window");
        };
        self.lane
            .absorb(&window[self.position..self.position + length]);
        self.position += length;
    }

    /// `sha256:<hex>` of the file, taking the tail of its last window.
    fn finish(self, progress: &dyn HashProgress) -> String {
        let tail = self
            .window
            .as_ref()
            .map_or(&[][..], |window| &window[self.position..]);
        progress.advance(tail.len() as u64);
        format!("sha256:{}", hex::encode(self.lane.finish(tail)))
    }
}

/// `sha256:<hex>` of a small file, read through `buffer`.
pub(super) fn read_and_hash(
    path: &Path,
    listed_size: u64,
    buffer: &mut [u8],
    progress: &dyn HashProgress,
) -> Result<String, ManifestError> {
    let mut file = File::open(path).map_err(read_error(path))?;
    let mut hasher = Sha256::new();
    let mut hashed = 0u64;
    loop {
        // The error (and its path copy) only when a read fails, not on every read.
        let n = file.read(buffer).map_err(|e| read_error(path)(e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        hashed += n as u64;
        progress.advance(n as u64);
    }
    if hashed != listed_size {
        return Err(ManifestError::Changed {
            path: path.to_path_buf(),
            listed: listed_size,
            hashed,
        });
    }
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
}
