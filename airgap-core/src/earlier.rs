//! The host side of ABI 1.1's paging: a Finish-stage plugin asks for the earlier files a page
//! at a time (`HostCallbacks::earlier_page`) instead of receiving them all in
//! `request.earlier`. Pages are cut from a walk of what the host already holds (the plan, on
//! disk beyond its memory budget, or the request's own list), never from a second copy of
//! every file: memory is one page and one look-ahead chunk, whatever the bundle's size.
//!
//! Every argument comes from a plugin and is checked: an unknown list, a `max` of 0 and a
//! `start` past the end are errors with a message; `max` is capped at
//! [`EARLIER_PAGE_MAX`]; going back restarts the walk.

use std::collections::VecDeque;

use airgap_plugin_api::ffi::{EARLIER_ALL, EARLIER_ELF_AND_LINKS, EARLIER_PAGE_MAX};
use airgap_plugin_api::{BundleFile, ContributeRequest, FileKind};

/// Where the earlier files a plugin pages through come from.
#[derive(Clone, Copy)]
pub enum Earlier<'a> {
    /// `request.earlier`: the host sends the request without them and pages them instead
    /// (callers that hold the list anyway: tests, tools).
    Request,
    /// The plan's paths, streamed in order from memory and its sorted runs on disk.
    Plan(&'a airgap_archive::Plan),
}

/// Files looked at in one step of an ELF-and-links walk: their first bytes are read in
/// parallel, as the check reads them.
const CHUNK: usize = 256;

type Walk<'a> = Box<dyn Iterator<Item = Result<BundleFile, String>> + 'a>;

/// One open walk: the list it filters, its position and what it read ahead.
struct Cursor<'a> {
    which: u32,
    files: Walk<'a>,
    /// Index (in the filtered list) of the first record in `ahead`.
    next: u64,
    ahead: VecDeque<BundleFile>,
    ended: bool,
}

/// Answers one plugin call's page requests.
pub(crate) struct Pager<'a> {
    earlier: Earlier<'a>,
    request: &'a ContributeRequest,
    cursor: Option<Cursor<'a>>,
}

impl<'a> Pager<'a> {
    pub(crate) fn new(earlier: Earlier<'a>, request: &'a ContributeRequest) -> Pager<'a> {
        Pager {
            earlier,
            request,
            cursor: None,
        }
    }

    /// The JSON array of records `start..start + max` of list `which`, or why not.
    pub(crate) fn page(&mut self, which: u32, start: u64, max: u64) -> Result<Vec<u8>, String> {
        if which != EARLIER_ALL && which != EARLIER_ELF_AND_LINKS {
            return Err(format!(
                "unknown list {which} (0 is every earlier file, 1 the ELF files and links)"
            ));
        }
        if max == 0 {
            return Err("a page of 0 files was asked for".into());
        }
        let reuse = self
            .cursor
            .as_ref()
            .is_some_and(|c| c.which == which && c.next <= start);
        if !reuse {
            self.cursor = Some(Cursor {
                which,
                files: self.walk(),
                next: 0,
                ahead: VecDeque::new(),
                ended: false,
            });
        }
        let Some(cursor) = self.cursor.as_mut() else {
            return Err("internal: no walk".into());
        };
        while cursor.next < start {
            if cursor.pop()?.is_none() {
                return Err(format!(
                    "a page starting at file {start} was asked for, but there are {} earlier files in that list",
                    cursor.next
                ));
            }
        }
        let mut page = Vec::new();
        while (page.len() as u64) < max.min(EARLIER_PAGE_MAX) {
            match cursor.pop()? {
                Some(file) => page.push(file),
                None => break,
            }
        }
        serde_json::to_vec(&page).map_err(|e| format!("internal: cannot encode a page: {e}"))
    }

    fn walk(&self) -> Walk<'a> {
        match self.earlier {
            Earlier::Request => Box::new(self.request.earlier.iter().cloned().map(Ok)),
            Earlier::Plan(plan) => Box::new(plan.iter_files().map(|r| {
                r.map(crate::convert::bundle_file)
                    .map_err(|e| e.to_string())
            })),
        }
    }
}

impl Cursor<'_> {
    /// The next record of the list, reading ahead a chunk when none is left.
    fn pop(&mut self) -> Result<Option<BundleFile>, String> {
        while self.ahead.is_empty() && !self.ended {
            self.read_ahead()?;
        }
        let file = self.ahead.pop_front();
        if file.is_some() {
            self.next += 1;
        }
        Ok(file)
    }

    fn read_ahead(&mut self) -> Result<(), String> {
        let mut chunk = Vec::with_capacity(CHUNK);
        for file in self.files.by_ref() {
            chunk.push(file?);
            if chunk.len() == CHUNK {
                break;
            }
        }
        if chunk.len() < CHUNK {
            self.ended = true;
        }
        if self.which == EARLIER_ELF_AND_LINKS {
            use rayon::prelude::*;
            let keep: Vec<bool> = chunk.par_iter().map(elf_or_link).collect();
            self.ahead.extend(
                chunk
                    .into_iter()
                    .zip(keep)
                    .filter_map(|(f, keep)| keep.then_some(f)),
            );
        } else {
            self.ahead.extend(chunk);
        }
        Ok(())
    }
}

/// A link, or a regular file whose first bytes say ELF (read as the check reads them).
fn elf_or_link(file: &BundleFile) -> bool {
    match (&file.kind, &file.source) {
        (FileKind::Symlink { .. }, _) => true,
        (FileKind::File, Some(source)) => crate::check::starts_as_elf(source),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(n: usize) -> ContributeRequest {
        let mut request = ContributeRequest::default();
        request.earlier = (0..n)
            .map(|i| {
                let kind = if i % 3 == 0 {
                    FileKind::Symlink { target: "x".into() }
                } else {
                    FileKind::Dir
                };
                BundleFile::new(format!("f{i:05}"), kind, 0o755, "t")
            })
            .collect();
        request
    }

    fn paths(json: &[u8]) -> Vec<String> {
        let files: Vec<BundleFile> = serde_json::from_slice(json).expect("a page");
        files.into_iter().map(|f| f.path).collect()
    }

    /// Pages in order, a jump forward, a jump back (which restarts the walk) and the end
    /// all cut the one sorted list at the asked place.
    #[test]
    fn pages_cut_the_list_where_asked_in_any_order() {
        let req = request(3000);
        let mut pager = Pager::new(Earlier::Request, &req);
        let all: Vec<String> = req.earlier.iter().map(|f| f.path.clone()).collect();
        let page = |pager: &mut Pager<'_>, start: u64, max: u64| {
            paths(&pager.page(EARLIER_ALL, start, max).expect("page"))
        };
        assert_eq!(page(&mut pager, 0, 10), all[..10]);
        assert_eq!(page(&mut pager, 10, 5000), all[10..1034]);
        assert_eq!(page(&mut pager, 2990, 100), all[2990..]);
        assert_eq!(page(&mut pager, 5, 3), all[5..8]);
        assert!(page(&mut pager, 3000, 10).is_empty());
        let past = pager.page(EARLIER_ALL, 3001, 10).expect_err("past the end");
        assert!(past.contains("there are 3000 earlier files"), "{past}");
        // The ELF-and-links list is its own sequence: here, the links.
        let links: Vec<String> = all.iter().step_by(3).cloned().collect();
        let elf = paths(&pager.page(EARLIER_ELF_AND_LINKS, 0, 1024).expect("page"));
        assert_eq!(elf, links[..1000]);
        assert!(pager.page(EARLIER_ELF_AND_LINKS, 1001, 1).is_err());
    }
}
