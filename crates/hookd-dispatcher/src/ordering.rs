//! Ordered delivery per key (B6). Each (webhook, key) has a *line* in the NATS key-value
//! bucket `hookd_ordering`: the deliveries waiting, sorted by their event's sequence in
//! `HOOKD_EVENTS` (publish order), and the head's *turn* (which dispatcher attempts it, until
//! when). Every dispatcher reads and changes lines with compare-and-set writes only, so any
//! number of them share the work of the one `hookd-delivery` consumer:
//!
//! - the fan-out places a delivery in its line *before* storing its job ([`Ordering::place`]);
//! - a dispatcher attempts a job only when it is the head of its line **and** every event
//!   published before it has been fanned out: the fan-out consumer's ack floor (the
//!   [`Watermark`]) has passed it, so no earlier delivery of the key can still join the line.
//!   Fan-outs run concurrently (and on several dispatchers), so jobs are stored in no
//!   particular order; the line, not the stream, decides;
//! - the head takes its turn (a lease that outlasts the attempt's timeout) before the HTTP
//!   call, so no two dispatchers ever attempt a key at once, even when JetStream redelivers a
//!   job whose dispatcher died;
//! - the head leaves the line once its result is stored and before its message is settled:
//!   delivered, or failed after its last retry. A retry keeps its place and holds back only its
//!   own key; the others behind it are put back until its retry is due.
//!
//! A job that finds no place for itself in its line (a resend, a replayed job, a job stored
//! before the webhook was ordered, or a redelivery of one that already left) joins the end of
//! the line. A head that nobody attempts for `stale_after` past its due time (its job was lost)
//! is skipped, so a line never blocks for good.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, AtomicUsize, Ordering as AtomicOrdering},
    },
    time::Duration,
};

use async_nats::jetstream::{consumer::PullConsumer, kv};
use bytes::Bytes;
use chrono::Utc;
use futures::StreamExt;
use hookd_core::Webhook;
use hookd_nats::DeliveryJob;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};

/// The most deliveries one line holds; beyond it new events of the key go unordered (logged).
const MAX_LINE: usize = 50_000;
/// How long past the end of its attempt's timeout a turn lasts: covers the result write
/// and, between dispatchers, clocks that differ by less than this.
const TURN_MARGIN: Duration = Duration::from_secs(30);
/// A follower waits in place while the head is due within this; otherwise it is put back
/// until the head's due time.
const WAIT_IN_PLACE: Duration = Duration::from_secs(2);
/// How often the first local job waiting on a line looks at it even without a change seen.
const RECHECK: Duration = Duration::from_millis(500);
/// How often the others do: they are woken when they become the first.
const FOLLOWER_RECHECK: Duration = Duration::from_secs(30);
/// A job put back because too many wait locally comes back after about this much per job
/// ahead of it in its line (an ordered delivery's few key-value round trips and its attempt),
/// at least a second and at most [`MAX_PUT_BACK`].
const PER_JOB_AHEAD: Duration = Duration::from_millis(5);
const MAX_PUT_BACK: Duration = Duration::from_secs(30);
/// How often the watermark is read while someone waits for it.
const WATERMARK_POLL: Duration = Duration::from_millis(20);

/// One place in a line: a delivery the fan-out placed (its event's sequence identifies it in
/// the line of one webhook and key), or one that joined at the end (after `seq`, by id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
enum Place {
    Event(u64),
    Late(u64, String),
}

impl Place {
    fn position(&self) -> (u64, u8) {
        match self {
            Self::Event(s) => (*s, 0),
            Self::Late(s, _) => (*s, 1),
        }
    }

    /// The fan-out watermark this place needs: every event before it fanned out.
    fn needs(&self) -> u64 {
        match self {
            Self::Event(s) => s.saturating_sub(1),
            Self::Late(s, _) => *s,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Line {
    #[serde(default, rename = "q")]
    queue: Vec<Place>,
    /// The head's turn.
    #[serde(default, rename = "t", skip_serializing_if = "Option::is_none")]
    turn: Option<TurnState>,
    /// When the head is due (ms since the epoch): since it became the head, or its retry.
    #[serde(default, rename = "d")]
    due_ms: i64,
    /// The last event whose delivery finished here. Heads finish in order, so a job placed
    /// by the fan-out at or before it that is no longer in the line is over: a redelivery
    /// of a job whose dispatcher died between leaving the line and settling its message.
    #[serde(default, rename = "f", skip_serializing_if = "is_zero")]
    done: u64,
    /// Events skipped as lost heads (a few): if their job turns up after all, it joins the
    /// end of the line instead of counting as over.
    #[serde(default, rename = "s", skip_serializing_if = "Vec::is_empty")]
    skipped: Vec<u64>,
}

#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The most skipped heads a line remembers.
const MAX_SKIPPED: usize = 64;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TurnState {
    /// The dispatcher attempting the head.
    #[serde(rename = "h")]
    holder: String,
    #[serde(rename = "u")]
    until_ms: i64,
}

impl Line {
    fn decode(bytes: &[u8]) -> Self {
        serde_json::from_slice(bytes).unwrap_or_default()
    }

    fn encode(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    fn insert(&mut self, place: Place, now_ms: i64) {
        if self.queue.is_empty() {
            self.due_ms = now_ms;
        }
        let at = self.queue.partition_point(|p| p.position() < place.position());
        self.queue.insert(at, place);
    }

    fn remove(&mut self, place: &Place, now_ms: i64) {
        if self.queue.first() == Some(place) {
            self.turn = None;
            self.due_ms = now_ms;
        }
        self.queue.retain(|p| p != place);
    }

    fn turn_held(&self, now_ms: i64) -> bool {
        self.turn.as_ref().is_some_and(|t| t.until_ms > now_ms)
    }
}

/// What a job may do about its line.
pub enum Admission {
    /// Not ordered (or the event has no key): go ahead.
    Unordered,
    /// Its turn: attempt it, then [`Turn::finish`].
    Turn(Turn),
    /// Not yet: put it back, unattempted, until then.
    Later(chrono::DateTime<Utc>),
    /// Its delivery is over already (its result is stored): settle it without an attempt.
    Done,
    /// The dispatcher is stopping.
    Stopped,
}

/// A head's turn at its line.
pub struct Turn {
    line: String,
    place: Place,
}

/// A revision of a line as read (0: no such key, or deleted).
struct Read {
    revision: u64,
    line: Line,
}

/// The local jobs waiting on one line, by their place in it. A change of the line wakes only
/// the first of them: it is the one that may be the head, take the turn, or find the head
/// stale; the others could do nothing but read the line again. Waking every waiter on every
/// change made a line's cost quadratic in its waiting jobs (one key with 2 000 jobs did not
/// drain in four minutes). When the first leaves (its turn, or put back), the next is woken.
#[derive(Default)]
struct Interest {
    waiters: BTreeMap<WaiterKey, Arc<Notify>>,
}

/// A waiter's order in its line: its place's position (the end until it knows its place),
/// then a number unique in this process.
type WaiterKey = ((u64, u8), u64);

impl Interest {
    fn wake_first(&self) {
        if let Some(notify) = self.waiters.values().next() {
            notify.notify_one();
        }
    }
}

/// The ordered-delivery side of a dispatcher.
pub struct Ordering {
    kv: kv::Store,
    me: String,
    watermark: Watermark,
    stale_after: Duration,
    /// Lines local jobs wait on, woken by the bucket watch.
    interest: Mutex<HashMap<String, Interest>>,
    /// Lines being changed by this process, one change at a time each (see `modify`).
    changing: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Numbers the waiters.
    next_waiter: AtomicU64,
    waiting: AtomicUsize,
    max_waiting: usize,
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn at_ms(ms: i64) -> chrono::DateTime<Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_else(Utc::now)
}

#[derive(Debug, thiserror::Error)]
pub enum OrderingError {
    #[error("cannot read or write ordering line {line}: {reason}")]
    Kv { line: String, reason: String },
}

impl Ordering {
    pub fn new(
        kv: kv::Store,
        fanout: PullConsumer,
        stale_after: Duration,
        max_waiting: usize,
    ) -> Arc<Self> {
        let this = Arc::new(Self {
            kv,
            me: uuid::Uuid::now_v7().simple().to_string(),
            watermark: Watermark::start(fanout),
            stale_after,
            interest: Mutex::default(),
            changing: Mutex::default(),
            next_waiter: AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
            max_waiting: max_waiting.max(1),
        });
        tokio::spawn(this.clone().watch_lines());
        this
    }

    /// Wakes the local jobs waiting on a line whenever any dispatcher changes it.
    async fn watch_lines(self: Arc<Self>) {
        loop {
            match self.kv.watch_all().await {
                Ok(mut changes) => {
                    while let Some(change) = changes.next().await {
                        let Ok(change) = change else { break };
                        if let Some(interest) = lock(&self.interest).get(&change.key) {
                            interest.wake_first();
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot watch the ordering lines; retrying"),
            }
            // The waiters look again every RECHECK meanwhile.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn read(&self, line: &str) -> Result<Read, OrderingError> {
        match self.kv.entry(line).await {
            Ok(Some(e)) if e.operation == kv::Operation::Put => {
                Ok(Read { revision: e.revision, line: Line::decode(&e.value) })
            }
            Ok(Some(e)) => Ok(Read { revision: e.revision, line: Line::default() }),
            Ok(None) => Ok(Read { revision: 0, line: Line::default() }),
            Err(e) => Err(OrderingError::Kv { line: line.to_owned(), reason: e.to_string() }),
        }
    }

    /// Writes `line` over revision `read`; `Ok(false)` when another writer came first.
    async fn write(&self, name: &str, revision: u64, line: &Line) -> Result<bool, OrderingError> {
        let err = |reason: String| OrderingError::Kv { line: name.to_owned(), reason };
        if line.queue.is_empty() && line.done == 0 && line.skipped.is_empty() {
            if revision == 0 {
                return Ok(true);
            }
            return match self.kv.delete_expect_revision(name, Some(revision)).await {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == kv::DeleteErrorKind::WrongLastRevision => Ok(false),
                Err(e) => Err(err(e.to_string())),
            };
        }
        if revision == 0 {
            return match self.kv.create(name, line.encode()).await {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(err(e.to_string())),
            };
        }
        match self.kv.update(name, line.encode(), revision).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(false),
            Err(e) => Err(err(e.to_string())),
        }
    }

    /// Changes a line by `change` (which says whether it changed anything), retrying on
    /// concurrent writes; the line as written. This process' changes of a line take turns:
    /// racing each other, n fan-outs placing events of one key would each read and write
    /// until they won, about n² round trips where n do; other dispatchers' writes are still
    /// caught by the revision check.
    async fn modify(
        &self,
        name: &str,
        mut change: impl FnMut(&mut Line) -> bool,
    ) -> Result<Line, OrderingError> {
        let turn = lock(&self.changing).entry(name.to_owned()).or_default().clone();
        let changed = async {
            let _turn = turn.lock().await;
            loop {
                let Read { revision, mut line } = self.read(name).await?;
                if !change(&mut line) || self.write(name, revision, &line).await? {
                    return Ok(line);
                }
            }
        }
        .await;
        let mut changing = lock(&self.changing);
        drop(turn);
        // Nobody else holds or waits for this line's turn: forget it. (A change cancelled
        // while waiting leaves its entry for the line's next change to forget.)
        if changing.get(name).is_some_and(|t| Arc::strong_count(t) == 1) {
            changing.remove(name);
        }
        changed
    }

    /// The fan-out places the delivery of event `sequence` in the line of `key` before it
    /// stores the job; the line's name for the job's `order_key`. `None` when the line is full
    /// (the delivery goes unordered).
    pub async fn place(
        &self,
        tenant: &str,
        webhook: &Webhook,
        key: &str,
        sequence: u64,
    ) -> Result<Option<String>, OrderingError> {
        let name = hookd_core::ordering::line_name(tenant, &webhook.id, key);
        let place = Place::Event(sequence);
        let mut full = false;
        self.modify(&name, |line| {
            full = line.queue.len() >= MAX_LINE;
            // Placed already; or a fan-out repeated (its event's ack was lost) after the
            // delivery finished: placing it again would make it the head of its line anew.
            let over = sequence <= line.done && !line.skipped.contains(&sequence);
            if full || over || line.queue.contains(&place) {
                return false;
            }
            line.insert(place.clone(), now_ms());
            true
        })
        .await?;
        if full {
            tracing::warn!(line = %name, "ordering line full; delivering this event without order");
            return Ok(None);
        }
        Ok(Some(name))
    }

    /// Waits until it is `job`'s turn at its line (or says to put it back, or that the
    /// dispatcher is stopping). `timeout` is the attempt's: the turn outlasts it.
    pub async fn admit(
        &self,
        job: &DeliveryJob,
        webhook: &Webhook,
        timeout: Duration,
        stopping: &mut watch::Receiver<bool>,
    ) -> Result<Admission, OrderingError> {
        let (name, mut place) = match (&job.order_key, job.event_sequence) {
            (Some(name), Some(seq)) => (name.clone(), Some(Place::Event(seq))),
            _ => {
                let Some(ordering) = &webhook.spec.ordering else {
                    return Ok(Admission::Unordered);
                };
                let event = hookd_core::Event::from_json(job.event.get().as_bytes(), Utc::now());
                let Some(key) = event.ok().and_then(|e| ordering.key_of(&e)) else {
                    return Ok(Admission::Unordered);
                };
                (hookd_core::ordering::line_name(&job.tenant, &webhook.id, &key), None)
            }
        };
        let mut waiting = self.enter(&name);
        if let Some(mine) = &place {
            waiting.at(mine);
            // Too many jobs wait here already and some of this line's are ahead of this one:
            // put it back without reading the line (a long line is a large value, and jobs
            // that come back only to be put back again must cost little), for about as long
            // as those ahead take.
            let crowded = self.waiting.load(AtomicOrdering::Relaxed) > self.max_waiting;
            let ahead = if crowded { waiting.ahead() } else { 0 };
            if ahead > 0 {
                let wait = (PER_JOB_AHEAD * u32::try_from(ahead).unwrap_or(u32::MAX))
                    .clamp(Duration::from_secs(1), MAX_PUT_BACK);
                let wait = chrono::Duration::from_std(wait).unwrap_or_default()
                    + chrono::Duration::milliseconds(jitter_ms(&job.delivery_id));
                return Ok(Admission::Later(Utc::now() + wait));
            }
        }
        loop {
            // A wake-up that comes while the line is read is kept (a permit) for the wait below.
            let Read { revision, mut line } = self.read(&name).await?;
            let now = now_ms();
            let found = place.as_ref().filter(|p| line.queue.contains(p)).cloned().or_else(|| {
                line.queue
                    .iter()
                    .find(|p| matches!(p, Place::Late(_, id) if id == job.delivery_id.as_str()))
                    .cloned()
            });
            let Some(mine) = found else {
                if let Some(Place::Event(seq)) = &place
                    && *seq <= line.done
                    && !line.skipped.contains(seq)
                {
                    tracing::info!(line = %name, "delivery already finished in its line; settling its repeat");
                    return Ok(Admission::Done);
                }
                // No place: join the end of the line, after everything fanned out so far.
                let last = line.queue.last().map_or(0, |p| p.position().0);
                let late =
                    Place::Late(last.max(self.watermark.current()), job.delivery_id.to_string());
                line.insert(late.clone(), now);
                if self.write(&name, revision, &line).await? {
                    tracing::debug!(line = %name, "delivery joined the end of its line");
                    place = Some(late);
                }
                continue;
            };
            place = Some(mine.clone());
            waiting.at(&mine);
            if self.watermark.current() < mine.needs() {
                // Earlier events are still being fanned out: one of them may belong here.
                tokio::select! {
                    () = self.watermark.wait_for(mine.needs()) => {}
                    true = stopped(stopping) => return Ok(Admission::Stopped),
                }
                continue;
            }
            let head = line.queue.first().cloned();
            if head.as_ref() != Some(&mine) {
                let due = line.due_ms.max(line.turn.as_ref().map_or(0, |t| t.until_ms));
                let stale = i64::try_from(self.stale_after.as_millis()).unwrap_or(i64::MAX);
                if !line.turn_held(now) && now > due.saturating_add(stale) {
                    if let Some(head) = head {
                        tracing::warn!(line = %name, ?head, "the head of the line was not attempted for too long; skipping it");
                        line.remove(&head, now);
                        if let Place::Event(seq) = head {
                            if line.skipped.len() >= MAX_SKIPPED {
                                line.skipped.remove(0);
                            }
                            line.skipped.push(seq);
                        }
                        self.write(&name, revision, &line).await?;
                    }
                    continue;
                }
                let wait_ms = i64::try_from(WAIT_IN_PLACE.as_millis()).unwrap_or(i64::MAX);
                if !line.turn_held(now) && due > now + wait_ms {
                    // The head waits for a retry: wait as a stored message, not in a slot.
                    return Ok(Admission::Later(at_ms(due + jitter_ms(&job.delivery_id))));
                }
                if self.waiting.load(AtomicOrdering::Relaxed) > self.max_waiting {
                    return Ok(Admission::Later(Utc::now() + chrono::Duration::seconds(1)));
                }
            } else if line.turn.as_ref().is_none_or(|t| t.until_ms <= now || t.holder == self.me) {
                // The head's turn: take it before anything is sent.
                let until =
                    now + i64::try_from((timeout + TURN_MARGIN).as_millis()).unwrap_or(i64::MAX);
                line.turn = Some(TurnState { holder: self.me.clone(), until_ms: until });
                if self.write(&name, revision, &line).await? {
                    return Ok(Admission::Turn(Turn { line: name, place: mine }));
                }
                continue;
            }
            // Wait for the line to change (or the turn to run out). Only the first local
            // waiter is woken by changes; the others look again now and then, in case.
            let recheck = if waiting.is_first() { RECHECK } else { FOLLOWER_RECHECK };
            tokio::select! {
                () = waiting.notify.notified() => {}
                () = tokio::time::sleep(recheck) => {}
                true = stopped(stopping) => return Ok(Admission::Stopped),
            }
        }
    }

    /// After the head's result is stored and before its message is settled: leaves the line
    /// when the delivery is over (`next_due` `None`), or keeps its place and frees the turn
    /// until its retry is due.
    pub async fn finish(&self, turn: Turn, next_due: Option<chrono::DateTime<Utc>>) {
        let result = self
            .modify(&turn.line, |line| {
                let now = now_ms();
                match next_due {
                    None => {
                        line.remove(&turn.place, now);
                        if let Place::Event(seq) = turn.place {
                            line.done = line.done.max(seq);
                            line.skipped.retain(|s| *s != seq);
                        }
                    }
                    Some(at) if line.queue.first() == Some(&turn.place) => {
                        line.turn = None;
                        line.due_ms = at.timestamp_millis();
                    }
                    Some(_) => return false,
                }
                true
            })
            .await;
        if let Err(error) = result {
            // The turn runs out by itself; the line waits until then.
            tracing::warn!(%error, "cannot update the ordering line after an attempt");
        }
    }

    /// A job of an ordered webhook that leaves delivery without an attempt (parked while the
    /// webhook is deactivated): it gives up its place; a replay puts it at the end.
    pub async fn leave(&self, job: &DeliveryJob) {
        let (Some(name), Some(seq)) = (&job.order_key, job.event_sequence) else { return };
        let place = Place::Event(seq);
        let result = self
            .modify(name, |line| {
                let present = line.queue.contains(&place);
                line.remove(&place, now_ms());
                present
            })
            .await;
        if let Err(error) = result {
            tracing::warn!(%error, "cannot leave the ordering line");
        }
    }

    fn enter(&self, name: &str) -> Waiting<'_> {
        let key = ((u64::MAX, u8::MAX), self.next_waiter.fetch_add(1, AtomicOrdering::Relaxed));
        let notify = Arc::new(Notify::new());
        lock(&self.interest)
            .entry(name.to_owned())
            .or_default()
            .waiters
            .insert(key, notify.clone());
        self.waiting.fetch_add(1, AtomicOrdering::Relaxed);
        Waiting { ordering: self, name: name.to_owned(), key, notify }
    }
}

/// A local job waiting on a line; dropping it ends the interest.
struct Waiting<'a> {
    ordering: &'a Ordering,
    name: String,
    key: WaiterKey,
    notify: Arc<Notify>,
}

impl Waiting<'_> {
    /// Takes the waiter's order from its place in the line.
    fn at(&mut self, place: &Place) {
        let key = (place.position(), self.key.1);
        if key == self.key {
            return;
        }
        let mut interest = lock(&self.ordering.interest);
        if let Some(i) = interest.get_mut(&self.name) {
            i.waiters.remove(&self.key);
            i.waiters.insert(key, self.notify.clone());
        }
        self.key = key;
    }

    /// How many local waiters of its line are ahead of it.
    fn ahead(&self) -> usize {
        lock(&self.ordering.interest)
            .get(&self.name)
            .map_or(0, |i| i.waiters.range(..self.key).count())
    }

    /// Whether it is the first local waiter of its line.
    fn is_first(&self) -> bool {
        lock(&self.ordering.interest)
            .get(&self.name)
            .and_then(|i| i.waiters.keys().next().copied())
            .is_none_or(|first| first == self.key)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.ordering.waiting.fetch_sub(1, AtomicOrdering::Relaxed);
        let mut interest = lock(&self.ordering.interest);
        if let Some(i) = interest.get_mut(&self.name) {
            let was_first = i.waiters.keys().next() == Some(&self.key);
            i.waiters.remove(&self.key);
            if i.waiters.is_empty() {
                interest.remove(&self.name);
            } else if was_first {
                // The next may be the head now, or have to be put back as this one was.
                i.wake_first();
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Up to a second, fixed per delivery: followers put back together come back spread out.
fn jitter_ms(id: &hookd_core::DeliveryId) -> i64 {
    let sum: u32 = id.as_str().bytes().map(u32::from).sum();
    i64::from(sum % 1000)
}

async fn stopped(stopping: &mut watch::Receiver<bool>) -> bool {
    stopping.wait_for(|s| *s).await.is_ok()
}

/// How far the fan-out has got: the fan-out consumer's ack floor, the sequence up to which
/// every event is fanned out (its jobs stored, and placed in their lines). Read only while a
/// job waits for it.
pub struct Watermark {
    floor: watch::Receiver<u64>,
    wanted: Arc<Notify>,
}

impl Watermark {
    fn start(consumer: PullConsumer) -> Self {
        let (tx, floor) = watch::channel(0);
        let wanted = Arc::new(Notify::new());
        tokio::spawn(Self::poll(consumer, tx, wanted.clone()));
        Self { floor, wanted }
    }

    async fn poll(consumer: PullConsumer, tx: watch::Sender<u64>, wanted: Arc<Notify>) {
        loop {
            match consumer.get_info().await {
                Ok(info) => {
                    tx.send_if_modified(|f| {
                        let changed = info.ack_floor.stream_sequence > *f;
                        *f = (*f).max(info.ack_floor.stream_sequence);
                        changed
                    });
                }
                Err(error) => tracing::debug!(%error, "cannot read the fan-out's ack floor"),
            }
            if tx.receiver_count() <= 1 {
                // Nobody waits: sleep until someone does (or a second passed).
                let _ = tokio::time::timeout(Duration::from_secs(1), wanted.notified()).await;
            } else {
                tokio::time::sleep(WATERMARK_POLL).await;
            }
        }
    }

    fn current(&self) -> u64 {
        *self.floor.borrow()
    }

    async fn wait_for(&self, sequence: u64) {
        let mut rx = self.floor.clone();
        self.wanted.notify_one();
        let _ = rx.wait_for(|f| *f >= sequence).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_keeps_publish_order_and_late_places_at_the_end() {
        let mut line = Line::default();
        for seq in [7, 3, 5] {
            line.insert(Place::Event(seq), 100);
        }
        line.insert(Place::Late(5, "dlv_r".into()), 100);
        line.insert(Place::Event(6), 100);
        assert_eq!(
            line.queue,
            [
                Place::Event(3),
                Place::Event(5),
                Place::Late(5, "dlv_r".into()),
                Place::Event(6),
                Place::Event(7)
            ]
        );
        assert_eq!(Place::Event(3).needs(), 2, "every earlier event fanned out");
        assert_eq!(Place::Late(5, "x".into()).needs(), 5);
        line.turn = Some(TurnState { holder: "a".into(), until_ms: 500 });
        line.remove(&Place::Event(3), 200);
        assert!(line.turn.is_none(), "the turn goes with the head");
        assert_eq!(line.due_ms, 200, "the new head is due at once");
        let text = String::from_utf8(line.encode().to_vec()).expect("utf-8");
        assert_eq!(text, r#"{"q":[5,[5,"dlv_r"],6,7],"d":200}"#);
        assert_eq!(Line::decode(text.as_bytes()).queue.len(), 4);
    }
}
