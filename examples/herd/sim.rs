//! The fleet simulation behind `examples/herd`: N nodes, each running a rotation policy on
//! simulated time against one simulated CSR API, counting the API requests of every simulated
//! second.
//!
//! certrotate's nodes run the library's own policy: [`certrotate::schedule::Policy`] decides
//! every step (its backoff from [`certrotate::schedule::Backoff`], its deadlines from
//! [`certrotate::schedule::rotation_deadline`]), exactly as the manager's rotation thread asks
//! it; only the clock, the sleeps and the API are simulated. client-go's nodes follow its
//! certificate manager's `rotateCerts` loop, modelled from its constants: a deadline at a random
//! 70–90 % of the lifetime; on failure `wait.ExponentialBackoff{Duration: 2s, Factor: 2,
//! Jitter: 0.1, Steps: 5}` (five attempts, the sleeps between them 2, 4, 8, 16 s stretched by up
//! to 10 %), then `wait.PollInfinite(32s)`: an attempt every 32 s, unjittered; it does not read
//! `Retry-After`.
//!
//! One attempt is one create request (a failed one included); a successful attempt adds the
//! watch for its certificate. Issuance is instant, with the Kubernetes signer's validity:
//! NotBefore = now − 5 min, NotAfter = now + TTL (− 5 min when the TTL is 8 h or more).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use certrotate::schedule::{
    AfterAttempt, Backoff, CertFacts, Inputs, Outcome, Policy, Step, rotation_deadline,
};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// Seconds in an hour of simulated time.
pub const HOUR: u64 = 3600;
/// Seconds in a day.
pub const DAY: u64 = 24 * HOUR;

/// Which rotation policy the nodes run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fleet {
    /// certrotate's [`Policy`], with this backoff.
    Certrotate(Backoff),
    /// client-go's certificate manager, modelled from its constants.
    ClientGo,
}

/// What the simulated fleet and API do.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// How many nodes.
    pub nodes: usize,
    /// The nodes start (with no certificate) at uniform random points in `[0, start_spread)`.
    pub start_spread: Duration,
    /// The API refuses every request in `[outage.0, outage.1)` (seconds of simulated time).
    pub outage: (u64, u64),
    /// The API admits at most this many creates per simulated second, answering the others 429
    /// with `Retry-After: retry_after` (the apiserver's priority and fairness); `None`: no limit.
    pub admit: Option<(u32, Duration)>,
    /// The lifetime of issued certificates.
    pub lifetime: Duration,
    /// How long to simulate, in seconds.
    pub duration: u64,
    /// The seed of every random draw: the same seed gives the same run.
    pub seed: u64,
}

/// What a run counted.
#[derive(Debug, Clone)]
pub struct Run {
    /// Create requests in each simulated second that had any (failed ones included).
    pub creates: BTreeMap<u64, u32>,
    /// All API requests in each simulated second that had any: creates, plus one watch per
    /// issued certificate.
    pub requests: BTreeMap<u64, u32>,
    /// Creates answered 429.
    pub throttled: u64,
    /// When each node got its first certificate (seconds), if it did.
    pub first_certificate: Vec<Option<f64>>,
    /// When each rotation after the first certificate happened (seconds).
    pub renewals: Vec<f64>,
}

/// How the simulated API answers a create at `now`.
enum Answer {
    Issued,
    Refused,
    Throttled(Duration),
}

struct Api<'a> {
    scenario: &'a Scenario,
    run: Run,
}

impl Api<'_> {
    fn create(&mut self, now: Duration) -> Answer {
        let second = now.as_secs();
        let slot = self.run.creates.entry(second).or_default();
        *slot += 1;
        let count = *slot;
        *self.run.requests.entry(second).or_default() += 1;
        let (down_from, down_to) = self.scenario.outage;
        if (down_from..down_to).contains(&second) {
            return Answer::Refused;
        }
        if let Some((limit, retry_after)) = self.scenario.admit
            && count > limit
        {
            self.run.throttled += 1;
            return Answer::Throttled(retry_after);
        }
        *self.run.requests.entry(second).or_default() += 1;
        Answer::Issued
    }
}

/// The validity the Kubernetes signer gives a certificate issued at `now`.
fn issued_validity(now: Duration, lifetime: Duration) -> (SystemTime, SystemTime) {
    let backdate = Duration::from_secs(300);
    let issued = UNIX_EPOCH + now;
    let not_after = if lifetime < Duration::from_secs(8 * 3600) {
        issued + lifetime
    } else {
        issued + lifetime - backdate
    };
    (issued - backdate, not_after)
}

fn since_epoch(t: SystemTime) -> Duration {
    t.duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// One certrotate node: the library's policy and what the manager would tell it.
struct OurNode {
    policy: Policy,
    /// The current certificate: its NotAfter and the deadline drawn when it was published.
    cert: Option<(SystemTime, SystemTime)>,
    forced: bool,
    generation: u64,
}

/// One client-go node.
struct ClientGoNode {
    /// The current certificate's rotation deadline.
    deadline: Option<Duration>,
    /// Failed attempts of the current rotation.
    failures: u32,
}

enum Node {
    Ours(Box<OurNode>),
    ClientGo(ClientGoNode),
}

/// How long certrotate's nodes sleep at most between looks. The manager's default is 60 s; a
/// look that is not an attempt costs the API nothing, so a longer slice changes no request
/// and keeps a simulated year of 10,000 nodes to a few seconds.
const SIM_SLEEP_SLICE: Duration = Duration::from_secs(86_400);

/// Runs `scenario` with every node on `fleet`'s policy.
pub fn simulate(scenario: &Scenario, fleet: Fleet) -> Run {
    let mut api = Api {
        scenario,
        run: Run {
            creates: BTreeMap::new(),
            requests: BTreeMap::new(),
            throttled: 0,
            first_certificate: vec![None; scenario.nodes],
            renewals: Vec::new(),
        },
    };
    let mut rng = StdRng::seed_from_u64(scenario.seed);
    let end = Duration::from_secs(scenario.duration);
    // Wake-ups in time order; ties go to the lower node index, so a run is deterministic.
    let mut queue: BinaryHeap<Reverse<(Duration, usize)>> = BinaryHeap::new();
    let mut nodes: Vec<Node> = (0..scenario.nodes)
        .map(|i| {
            let start = scenario.start_spread.mul_f64(rng.random_range(0.0..1.0));
            queue.push(Reverse((start, i)));
            match fleet {
                Fleet::Certrotate(backoff) => Node::Ours(Box::new(OurNode {
                    policy: Policy::new(SIM_SLEEP_SLICE, None).with_backoff(backoff),
                    cert: None,
                    forced: true,
                    generation: 0,
                })),
                Fleet::ClientGo => Node::ClientGo(ClientGoNode {
                    deadline: None,
                    failures: 0,
                }),
            }
        })
        .collect();
    while let Some(Reverse((now, i))) = queue.pop() {
        if now >= end {
            break;
        }
        let next = match &mut nodes[i] {
            Node::Ours(node) => wake_ours(node, i, now, &mut api, &mut rng),
            Node::ClientGo(node) => wake_client_go(node, i, now, &mut api, &mut rng),
        };
        if let Some(next) = next {
            queue.push(Reverse((next, i)));
        }
    }
    api.run
}

/// Records a certificate issued to node `i` at `now`.
fn issued(run: &mut Run, i: usize, now: Duration) {
    let at = now.as_secs_f64();
    match run.first_certificate[i] {
        None => run.first_certificate[i] = Some(at),
        Some(_) => run.renewals.push(at),
    }
}

/// certrotate's node at a wake-up: asks the policy for steps, as the rotation thread does,
/// until one is a sleep; returns when to wake next.
fn wake_ours(
    node: &mut OurNode,
    i: usize,
    now: Duration,
    api: &mut Api<'_>,
    rng: &mut StdRng,
) -> Option<Duration> {
    let wall = UNIX_EPOCH + now;
    loop {
        let cert = node
            .cert
            .filter(|(not_after, _)| *not_after > wall)
            .map(|(_, deadline)| CertFacts {
                deadline,
                satisfies_template: true,
            });
        let inputs = Inputs {
            now: wall,
            cert,
            has_template: true,
            forced: node.forced,
            generation: node.generation,
        };
        let step = node.policy.next_step(|| inputs, rng);
        let outcome = match step {
            Step::Sleep { duration, .. } | Step::WaitForTemplate { duration } => {
                return Some(now + duration);
            }
            Step::SpaceOut { delay, .. } => return Some(now + delay),
            Step::Attempt { .. } => match api.create(now) {
                Answer::Issued => {
                    let (not_before, not_after) = issued_validity(now, api.scenario.lifetime);
                    let deadline = rotation_deadline(not_before, not_after, rng);
                    node.cert = Some((not_after, deadline));
                    node.forced = false;
                    node.generation += 1;
                    issued(&mut api.run, i, now);
                    Outcome::Rotated
                }
                Answer::Refused => Outcome::Failed { retry_after: None },
                Answer::Throttled(retry_after) => Outcome::Failed {
                    retry_after: Some(retry_after),
                },
            },
            _ => return None,
        };
        match node.policy.attempted(outcome, rng) {
            AfterAttempt::Decide => continue,
            AfterAttempt::Backoff { delay, .. } => return Some(now + delay),
            _ => return None,
        }
    }
}

/// client-go's node at a wake-up: sleeps to the deadline, or attempts and backs off.
fn wake_client_go(
    node: &mut ClientGoNode,
    i: usize,
    now: Duration,
    api: &mut Api<'_>,
    rng: &mut StdRng,
) -> Option<Duration> {
    if let Some(deadline) = node.deadline
        && deadline > now
        && node.failures == 0
    {
        return Some(deadline);
    }
    match api.create(now) {
        Answer::Issued => {
            let (not_before, not_after) = issued_validity(now, api.scenario.lifetime);
            let deadline = since_epoch(rotation_deadline(not_before, not_after, rng));
            node.deadline = Some(deadline);
            node.failures = 0;
            issued(&mut api.run, i, now);
            // wait.Until's 1 s period, then a sleep to the new deadline (or, for a certificate
            // issued past its deadline, the next attempt).
            Some((now + Duration::from_secs(1)).max(deadline))
        }
        Answer::Refused | Answer::Throttled(_) => {
            node.failures += 1;
            let sleep = if node.failures < 5 {
                let base = Duration::from_secs(2 << (node.failures - 1));
                base.mul_f64(1.0 + rng.random_range(0.0..0.1))
            } else {
                Duration::from_secs(32)
            };
            Some(now + sleep)
        }
    }
}

/// Figures of one second-by-second series over `[from, to)` seconds.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Mean per second.
    pub mean: f64,
    /// The busiest second's count.
    pub peak: u32,
}

/// The mean and the busiest second of `per_second` over the seconds `[from, to)`.
pub fn window(per_second: &BTreeMap<u64, u32>, from: u64, to: u64) -> Window {
    let mut total = 0u64;
    let mut peak = 0;
    for &count in per_second.range(from..to).map(|(_, c)| c) {
        total += u64::from(count);
        peak = peak.max(count);
    }
    Window {
        mean: total as f64 / to.saturating_sub(from).max(1) as f64,
        peak,
    }
}

/// The `q`-quantile (0..=1) of `values`, which it sorts.
pub fn quantile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let k = ((values.len() - 1) as f64 * q).round() as usize;
    values[k]
}

impl Scenario {
    /// 1: the API down for the first hour, then ten more minutes.
    pub fn outage(nodes: usize, seed: u64) -> Scenario {
        Scenario {
            nodes,
            start_spread: Duration::from_secs(1),
            outage: (0, HOUR),
            admit: None,
            lifetime: Duration::from_secs(30 * DAY),
            duration: HOUR + 600,
            seed,
        }
    }

    /// 2: the same outage, then 100 creates per second admitted, the others 429 with
    /// `Retry-After: 120`.
    pub fn throttled(nodes: usize, seed: u64) -> Scenario {
        Scenario {
            admit: Some((100, Duration::from_secs(120))),
            duration: HOUR + 3 * HOUR,
            ..Scenario::outage(nodes, seed)
        }
    }

    /// 3: no outage, 30-day certificates, a year.
    pub fn steady(nodes: usize, seed: u64) -> Scenario {
        Scenario {
            outage: (0, 0),
            duration: 365 * DAY,
            ..Scenario::outage(nodes, seed)
        }
    }
}

/// The figures the outage scenario is judged on.
pub struct OutageFigures {
    /// The busiest second of the first minute.
    pub first_minute: u32,
    /// Mean creates per second from the outage's first minute to its end.
    pub mean: f64,
    /// The busiest second over the same span.
    pub outage_peak: u32,
    /// The busiest second of the first minute after the API is back.
    pub recovery_peak: u32,
    /// The busiest second anywhere after the first minute.
    pub later_peak: u32,
}

impl OutageFigures {
    /// The figures of `run`, a run of [`Scenario::outage`].
    pub fn of(run: &Run, scenario: &Scenario) -> OutageFigures {
        let (_, back) = scenario.outage;
        let during = window(&run.creates, 60, back);
        OutageFigures {
            first_minute: window(&run.creates, 0, 60).peak,
            mean: during.mean,
            outage_peak: during.peak,
            recovery_peak: window(&run.creates, back, back + 60).peak,
            later_peak: window(&run.creates, 60, scenario.duration).peak,
        }
    }
}
