import CHealth
import Foundation
import Glibc
import Logging
import Model
import NIOConcurrencyHelpers
import SystemCalls

/// One thread running probes over non-blocking sockets with one epoll
/// instance: a tcp check is one SYN out and one SYN-ACK (or reset) in,
/// batched with the others of the same turn of the loop (`HalfOpen`), or
/// where raw sockets are not allowed socket, connect, epoll_ctl and a reset
/// close; an http check on a kept connection is one send and, at the next
/// turn of the loop, one recv. A kept connection is out of epoll between
/// checks and while its answer is awaited: the answers to a turn's requests
/// are read at the next turn, and only a socket with nothing to read by then
/// is watched (see `readAnswers`). There is no channel, pipeline or promise
/// per check. tls and https checks are handed
/// to `external` (NIOSSL on SwiftNIO) and their results come back here.
///
/// Every probe runs at fixed times: its phase within its interval, every
/// interval (see `Phases`). A loop that falls behind skips the checks it
/// can no longer run on time and counts them (`RoundTally`), rather than
/// running them late in a burst.
///
/// All state but the inbox and the published counts belongs to the thread.
final class CheckLoop: @unchecked Sendable {
    /// What to run: a probe of `target`, reported on the loop's thread to
    /// `report`, one result at a time, or when nil to the loop's `results`
    /// with the others of the same turn.
    struct Spec: Sendable {
        var id: UInt64
        var target: ProbeTarget
        /// First check at; nil: now, once, and the probe is forgotten.
        var firstDue: UInt64?
        var report: (@Sendable (ProbeResult) -> Void)?
    }

    /// Takes the results of one turn of the loop, by probe id, in the order
    /// the checks ended.
    typealias Results = @Sendable ([(id: UInt64, result: ProbeResult)]) -> Void

    /// Runs a check elsewhere (TLS) and calls back with its result.
    typealias External = @Sendable (ProbeTarget, @escaping @Sendable (ProbeResult) -> Void) -> Void

    /// What the loop has published of itself, read by `stats`.
    struct Published {
        var probes = 0
        var scheduledPerSecond = 0.0
        var roundNs: UInt64 = 1_000_000_000
        var latest = RoundTally.Round()
        /// When `latest` ended.
        var latestEnd: UInt64 = 0
        var startedTotal: UInt64 = 0
        var missedTotal: UInt64 = 0
        var halfOpenTotal: UInt64 = 0
        /// The half-open checks' source port, 0 before the first.
        var halfOpenPort: UInt16 = 0
        /// How tcp checks run (`HalfOpen.summary`); nil before the first.
        var tcpPath: String?
    }

    private enum Command {
        case add([Spec])
        case remove([UInt64])
        case finished(UInt64, UInt32, ProbeResult)
        case run(@Sendable () -> Void)
    }

    private struct Inbox {
        var commands: [Command] = []
        var woken = false
        var stopped = false
    }

    /// The loop sleeps on `epfd`: the inbox's eventfd and, while armed,
    /// `io`, the epoll instance of every socket.
    private let epfd: Int32
    private let io: Int32
    private let wake: Int32
    private let inbox = NIOLockedValueBox(Inbox())
    let published = NIOLockedValueBox(Published())
    private let external: External
    private let results: Results?
    private let logger: Logger

    // The thread's own.
    private var probes: [UInt64: Probe] = [:]
    /// The probes by slot, which timers name (no reference counting in the
    /// heap); freed slots are used again.
    private var slots: [Probe?] = []
    /// The token of each slot's probe (0: free), beside `slots`: a timer
    /// of a check that has ended (most timeouts) is recognised without
    /// reaching for its probe, which is likely out of the cache by then.
    private var tokens: [UInt32] = []
    private var freeSlots: [Int32] = []
    /// Tokens are unique in the loop: a timer of a freed slot's earlier
    /// probe never matches the probe using the slot now.
    private var lastToken: UInt32 = 0
    /// When each probe's next check starts.
    private var timers = TimerWheel()
    private var due: [LoopTimer] = []
    /// This turn's results for `results`.
    private var ended: [(id: UInt64, result: ProbeResult)] = []
    /// When each check times out: one queue per timeout in use, in the order
    /// the checks started, which is the order of their deadlines.
    private var deadlines: [DeadlineQueue] = []
    /// Requests sent on kept connections, not watched by epoll: their
    /// answers are read at the next turn.
    private var awaiting: [LoopTimer] = []
    private var awaitingScratch: [LoopTimer] = []
    private var deadlineQueue: [UInt64: Int] = [:]
    private var tally = RoundTally()
    private var scheduledPerSecond = 0.0
    private var lastWarning: UInt64 = 0
    private let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)
    /// tcp checks are half-open where a raw socket can be opened.
    private let halfOpenAllowed: Bool
    private var halfOpen = HalfOpen()
    /// A tcp check has connected fully.
    private var fullTCP = false

    private static let wakeID: UInt64 = 0
    private static let ioID: UInt64 = .max
    /// The loop's turns are at least this far apart: each runs the checks
    /// due since the last one (at most this late) in one batch, and reads
    /// the answers to the last turn's. 250 wake-ups a second at most, not
    /// one per check or per answer.
    private static let tickMs: Int32 = 4

    /// `halfOpen`: tcp checks send a SYN from a raw socket where the process
    /// may open one (false: they always connect fully).
    init(
        name: String, logger: Logger, halfOpen: Bool = true, results: Results? = nil,
        external: @escaping External
    ) throws {
        _ = raiseFileLimit
        epfd = try systemCall("create the epoll instance of", name, reports: .minusOneAndErrno) {
            epoll_create1(Int32(EPOLL_CLOEXEC))
        }
        do {
            io = try systemCall("create the socket epoll instance of", name, reports: .minusOneAndErrno) {
                epoll_create1(Int32(EPOLL_CLOEXEC))
            }
        } catch {
            close(epfd)
            throw error
        }
        do {
            wake = try systemCall("create the wake-up eventfd of", name, reports: .minusOneAndErrno) {
                eventfd(0, Int32(EFD_CLOEXEC) | Int32(EFD_NONBLOCK))
            }
        } catch {
            close(epfd)
            close(io)
            throw error
        }
        self.external = external
        self.results = results
        self.logger = logger
        halfOpenAllowed = halfOpen
        var event = tandem_epoll_event(EPOLLIN.rawValue, Self.wakeID)
        try systemCall("watch the wake-up eventfd of", name, reports: .minusOneAndErrno) {
            epoll_ctl(epfd, EPOLL_CTL_ADD, wake, &event)
        }
        var ioEvent = tandem_epoll_event(EPOLLIN.rawValue | EPOLLONESHOT.rawValue, Self.ioID)
        try systemCall("watch the socket epoll instance of", name, reports: .minusOneAndErrno) {
            epoll_ctl(epfd, EPOLL_CTL_ADD, io, &ioEvent)
        }
        let thread = Thread { [self] in run() }
        thread.name = name
        thread.start()
    }

    deinit {
        buffer.deallocate()
    }

    // MARK: From any thread

    func add(_ specs: [Spec]) { post(.add(specs)) }
    func remove(_ ids: [UInt64]) { post(.remove(ids)) }

    /// Runs `body` on the loop's thread (tests use it to hold the loop up).
    func execute(_ body: @escaping @Sendable () -> Void) { post(.run(body)) }

    /// Ends the thread: every socket is closed, nothing more is reported.
    func stop() {
        inbox.withLockedValue { box in
            guard !box.stopped else { return }
            box.stopped = true
            var one: UInt64 = 1
            _ = write(wake, &one, 8)
        }
    }

    private func post(_ command: Command) {
        inbox.withLockedValue { box in
            guard !box.stopped else { return }
            box.commands.append(command)
            if !box.woken {
                box.woken = true
                var one: UInt64 = 1
                _ = write(wake, &one, 8)
            }
        }
    }

    // MARK: The thread

    private func run() {
        var events = [epoll_event](repeating: epoll_event(), count: 512)
        var armed = true
        while true {
            var now = KernelClock.monotonicNs()
            // What the sockets have first: an answer that came before its
            // check's deadline counts.
            if !drainIO(&events) { break }
            readAnswers()
            runTimers(now)
            flushSYNs()
            reportEnded()
            let timeout = waitMs(now)
            // The sockets wake the loop only when no turn is due sooner
            // anyway; otherwise their answers are read at that turn.
            if !armed && timeout > Self.tickMs {
                var ioEvent = tandem_epoll_event(EPOLLIN.rawValue | EPOLLONESHOT.rawValue, Self.ioID)
                armed = epoll_ctl(epfd, EPOLL_CTL_MOD, io, &ioEvent) == 0
            }
            let count: Int32
            do throws(SystemCallError) {
                count = try systemCall("wait for", "events", reports: .minusOneAndErrno, retryingEINTR: false) {
                    epoll_wait(epfd, &events, Int32(events.count), timeout)
                }
            } catch {
                guard error.errno == EINTR else {
                    logger.critical("health checks stopped: epoll_wait failed", metadata: ["errno": "\(error.errno)"])
                    break
                }
                // Interrupted, the loop takes its turn at once: not a wait
                // as long again.
                count = 0
            }
            var woken = false
            for i in 0..<Int(count) {
                let id = withUnsafePointer(to: events[i]) { tandem_epoll_data($0) }
                if id == Self.wakeID { woken = true } else if id == Self.ioID { armed = false }
            }
            if woken {
                var value: UInt64 = 0
                _ = read(wake, &value, 8)
                let (commands, stopped) = inbox.withLockedValue { box in
                    defer { box.commands = []; box.woken = false }
                    return (box.commands, box.stopped)
                }
                if stopped { break }
                now = KernelClock.monotonicNs()
                for command in commands { apply(command, now: now) }
                reportEnded()
            }
        }
        for probe in probes.values { closeSocket(probe) }
        halfOpen.closeAll()
        probes = [:]
        slots = []
        tokens = []
        timers = TimerWheel()
        deadlines = []
        close(io)
        close(epfd)
        inbox.withLockedValue { _ in _ = close(wake) }
    }

    /// Handles what every socket has, without waiting; false if the loop
    /// must stop.
    private func drainIO(_ events: inout [epoll_event]) -> Bool {
        while true {
            let count: Int32
            do throws(SystemCallError) {
                count = try systemCall("wait for", "socket events", reports: .minusOneAndErrno) {
                    epoll_wait(io, &events, Int32(events.count), 0)
                }
            } catch {
                logger.critical("health checks stopped: epoll_wait failed", metadata: ["errno": "\(error.errno)"])
                return false
            }
            for i in 0..<Int(count) {
                let event = events[i]
                let id = withUnsafePointer(to: event) { tandem_epoll_data($0) }
                if id == HalfOpen.epollIDv4 || id == HalfOpen.epollIDv6 {
                    for (probe, reset) in halfOpen.receive(id == HalfOpen.epollIDv4 ? AF_INET : AF_INET6)
                    where probe.phase == .connecting {
                        finish(
                            probe, reset ? .failure("connect: \(SystemCallError.checkText(ECONNREFUSED))") : .success)
                    }
                } else if id < UInt64(slots.count), let probe = slots[Int(id)] {
                    handle(probe, event.events)
                }
            }
            if Int(count) < events.count { return true }
        }
    }

    /// Until the next timer, in whole milliseconds rounded up, at least a
    /// tick; at most a
    /// second, so rounds are counted while nothing is due.
    private func waitMs(_ now: UInt64) -> Int32 {
        if halfOpen.hasPending { return 1 }
        if !awaiting.isEmpty { return Self.tickMs }
        var first = timers.earliest
        for queue in deadlines {
            if let at = queue.first?.at, at < first ?? .max { first = at }
        }
        guard let next = first else { return 1000 }
        if next <= now { return Self.tickMs }
        return Int32(min(1000, max(UInt64(Self.tickMs), (next - now + 999_999) / 1_000_000)))
    }

    private func apply(_ command: Command, now: UInt64) {
        switch command {
        case .add(let specs):
            for spec in specs {
                let probe = Probe(spec, now: now)
                if let queue = deadlineQueue[probe.timeoutNs] {
                    probe.deadlineQueue = queue
                } else {
                    probe.deadlineQueue = deadlines.count
                    deadlineQueue[probe.timeoutNs] = deadlines.count
                    deadlines.append(DeadlineQueue())
                }
                probes[spec.id] = probe
                if let free = freeSlots.popLast() {
                    probe.slot = free
                    slots[Int(free)] = probe
                } else {
                    probe.slot = Int32(slots.count)
                    slots.append(probe)
                    tokens.append(0)
                }
                renewToken(probe)
                timers.push(LoopTimer(at: probe.due, slot: probe.slot, token: probe.token))
            }
            recount(now)
        case .remove(let ids):
            for id in ids {
                guard let probe = probes.removeValue(forKey: id) else { continue }
                probe.removed = true
                freeSlot(probe)
                halfOpen.forget(probe)
                closeSocket(probe)
            }
            recount(now)
        case .finished(let id, let token, let result):
            guard let probe = probes[id], probe.token == token, probe.phase == .external else { return }
            finish(probe, result)
        case .run(let body):
            body()
        }
    }

    /// The round is the longest interval; the schedule is the sum of rates.
    private func recount(_ now: UInt64) {
        var longest: UInt64 = 0
        var rate = 0.0
        for probe in probes.values where probe.periodic {
            longest = max(longest, probe.intervalNs)
            rate += 1e9 / Double(probe.intervalNs)
        }
        scheduledPerSecond = rate
        if longest > 0 { tally.setRound(longest, now: now) }
        publish(now)
    }

    private func publish(_ now: UInt64) {
        let periodic = probes.values.lazy.filter(\.periodic).count
        let (tally, rate) = (tally, scheduledPerSecond)
        published.withLockedValue { p in
            p.probes = periodic
            p.scheduledPerSecond = rate
            p.roundNs = tally.roundNs
            p.latest = tally.latest
            p.latestEnd = now - now % tally.roundNs
            p.startedTotal = tally.startedTotal
            p.missedTotal = tally.missedTotal
            p.halfOpenTotal = halfOpen.sent
            p.halfOpenPort = halfOpen.port
            p.tcpPath = halfOpenAllowed ? halfOpen.summary : (fullTCP ? "full connects (half-open checks off)" : nil)
        }
    }

    /// Voids the probe's earlier timers.
    private func renewToken(_ probe: Probe) {
        lastToken &+= 1
        if lastToken == 0 { lastToken = 1 }
        probe.token = lastToken
        if probe.slot >= 0 { tokens[Int(probe.slot)] = lastToken }
    }

    private func freeSlot(_ probe: Probe) {
        guard probe.slot >= 0 else { return }
        slots[Int(probe.slot)] = nil
        tokens[Int(probe.slot)] = 0
        freeSlots.append(probe.slot)
        probe.slot = -1
    }

    private func runTimers(_ now: UInt64) {
        if tally.roll(now: now) { roundEnded(now) }
        // Timeouts first: a check that ends now may start its next one now.
        for i in deadlines.indices {
            while let top = deadlines[i].first, top.at <= now {
                deadlines[i].pop()
                guard let probe = live(top), probe.phase != .idle else { continue }
                finish(probe, .failure("no answer within \(DurationText.format(probe.timeoutNs))"))
            }
        }
        timers.popDue(now, into: &due)
        prefetch(due)
        for top in due {
            guard let probe = live(top), probe.phase == .idle else { continue }
            start(probe, now: now)
        }
        due.removeAll(keepingCapacity: true)
    }

    /// Fetches the probes of `timers` into the cache together, then what
    /// their checks send (an http request, a SYN's address), then the
    /// request's bytes: each round's loads run side by side, not one after
    /// each send.
    private func prefetch(_ timers: [LoopTimer]) {
        for timer in timers {
            if let probe = live(timer) { tandem_prefetch(Unmanaged.passUnretained(probe).toOpaque(), 5) }
        }
        for timer in timers {
            guard let probe = live(timer) else { continue }
            switch probe.work {
            case .http: if let request = probe.request { tandem_prefetch(request.toOpaque(), 1) }
            case .tcp: probe.target.address.bytes.withUnsafeBytes { tandem_prefetch($0.baseAddress, 1) }
            case .external: break
            }
        }
        for timer in timers {
            guard let request = live(timer)?.request else { continue }
            request._withUnsafeGuaranteedRef { tandem_prefetch($0.bytes.baseAddress, 2) }
        }
    }

    /// The probe the timer is for, if the timer is not void.
    private func live(_ timer: LoopTimer) -> Probe? {
        tokens[Int(timer.slot)] == timer.token ? slots[Int(timer.slot)] : nil
    }

    private func reportEnded() {
        guard !ended.isEmpty, let results else { return }
        results(ended)
        ended.removeAll(keepingCapacity: true)
    }

    private func roundEnded(_ now: UInt64) {
        publish(now)
        let latest = tally.latest
        guard latest.missed > 0 || latest.latenessNs > tally.roundNs / 10 else { return }
        // Loud, but not more than every ten seconds.
        guard now - lastWarning >= 10_000_000_000 || lastWarning == 0 else { return }
        lastWarning = now
        logger.warning(
            "health checks are behind schedule",
            metadata: [
                "missed": "\(latest.missed)", "late": "\(DurationText.format(latest.latenessNs))",
                "round": "\(DurationText.format(tally.roundNs))", "done": "\(latest.started)"
            ])
    }

    // MARK: One check

    private func start(_ probe: Probe, now: UInt64) {
        let lateness = now > probe.due ? now - probe.due : 0
        var missed: UInt64 = 0
        if probe.periodic {
            probe.due += probe.intervalNs
            if probe.due <= now {
                missed = (now - probe.due) / probe.intervalNs + 1
                probe.due += missed * probe.intervalNs
            }
        }
        tally.started(now: now, latenessNs: lateness, missed: missed)
        renewToken(probe)
        deadlines[probe.deadlineQueue].push(LoopTimer(at: now + probe.timeoutNs, slot: probe.slot, token: probe.token))
        switch probe.work {
        case .tcp:
            if halfOpenAllowed, halfOpen.socket(probe.address.family, epfd: io, logger: logger) != nil {
                sendSYN(probe)
            } else {
                fullTCP = true
                connect(probe)
            }
        case .http:
            if probe.fd >= 0 {
                probe.reused = true
                send(probe, first: true)
            } else {
                connect(probe)
            }
        case .external:
            probe.phase = .external
            let (id, token) = (probe.id, probe.token)
            external(probe.target) { [weak self] result in self?.post(.finished(id, token, result)) }
        }
    }

    /// Queues the half-open check's SYN (sent by `flushSYNs`).
    private func sendSYN(_ probe: Probe) {
        var source: UInt32 = 0
        if probe.address.family == AF_INET {
            if let known = probe.source {
                source = known
            } else {
                do throws(SystemCallError) {
                    source = try halfOpen.source(for: probe.address)
                    probe.source = source
                } catch {
                    return finish(probe, .failure("connect: \(SystemCallError.checkText(error.errno))"))
                }
            }
        }
        probe.phase = .connecting
        halfOpen.queue(probe, source: source)
    }

    /// Sends the SYNs queued in this turn of the loop, in batches.
    private func flushSYNs() {
        guard halfOpen.hasPending else { return }
        for (probe, error) in halfOpen.flush() where probe.phase == .connecting && !probe.removed {
            finish(probe, .failure("connect: \(SystemCallError.checkText(error.errno))"))
        }
    }

    private func connect(_ probe: Probe) {
        probe.reused = false
        do throws(SystemCallError) {
            let quiet = if case .tcp = probe.work { true } else { false }
            let (fd, _) = try TCPSocket.connect(probe.address, quiet: quiet)
            probe.fd = fd
            probe.phase = .connecting
            // Edge-triggered, for the socket's life: no epoll_ctl per phase.
            // Named by the probe's slot: a socket is closed before its slot
            // is freed, so no event names a later probe.
            // A connect that finished at once is reported by the add itself.
            try watch(probe)
        } catch {
            finish(probe, .failure(error.checkFailure))
        }
    }

    private func handle(_ probe: Probe, _ events: UInt32) {
        let failed = events & (EPOLLERR.rawValue | EPOLLHUP.rawValue) != 0
        switch probe.phase {
        case .idle:
            // Not watched while idle: what the real did meanwhile (closed,
            // wrote a 408) is found by the next check, which then connects
            // again (`receive`).
            break
        case .connecting:
            if failed {
                let code = TCPSocket.pendingError(probe.fd)
                finish(probe, .failure("connect: \(SystemCallError.checkText(code != 0 ? code : ECONNREFUSED))"))
            } else if events & EPOLLOUT.rawValue != 0 {
                if case .tcp = probe.work { finish(probe, .success) } else { send(probe, first: true) }
            }
        case .sending:
            if events & EPOLLOUT.rawValue != 0 || failed { send(probe, first: false) }
            if probe.phase == .reading, events & (EPOLLIN.rawValue | EPOLLRDHUP.rawValue) != 0 { receive(probe) }
        case .reading:
            receive(probe)
        case .external:
            break
        }
    }

    /// Writes the request (from the start when `first`).
    private func send(_ probe: Probe, first: Bool) {
        guard let request = probe.request else { return }
        if first {
            probe.phase = .sending
            probe.sent = 0
            probe.reader = request._withUnsafeGuaranteedRef {
                HTTPResponseReader(headRequest: $0.head, keepBody: $0.keepBody)
            }
        }
        let bytes = request._withUnsafeGuaranteedRef { $0.bytes }
        while probe.sent < bytes.count {
            let n: Int?
            do throws(SystemCallError) {
                n = try nonBlockingSystemCall("send", "a check's request", reports: .minusOneAndErrno) {
                    Glibc.send(probe.fd, bytes.baseAddress! + probe.sent, bytes.count - probe.sent, Int32(MSG_NOSIGNAL))
                }
            } catch {
                if probe.reused { return reconnect(probe) }
                return finish(probe, .failure(error.checkFailure))
            }
            // The rest is written when the socket has room.
            guard let n, n > 0 else { return watchOrFail(probe) }
            probe.sent += n
        }
        probe.phase = .reading
        // A connection used for one check only: its answer is not
        // acknowledged on its own. The check reads the answer and closes
        // the connection with a reset before the delayed-ACK timer is due,
        // so the ACK is never sent: a packet fewer each way. (On a kept
        // connection the ACK has to go out anyway; the kernel sends it as
        // the answer arrives.)
        if !request._withUnsafeGuaranteedRef({ $0.keepAlive }) { TCPSocket.delayACK(probe.fd) }
        if !probe.watched { awaiting.append(LoopTimer(at: 0, slot: probe.slot, token: probe.token)) }
    }

    /// Reads the answers to the last turn's requests on kept connections;
    /// a socket with no whole answer yet is watched from now on.
    private func readAnswers() {
        guard !awaiting.isEmpty else { return }
        swap(&awaitingScratch, &awaiting)
        defer { awaitingScratch.removeAll(keepingCapacity: true) }
        for entry in awaitingScratch {
            if let probe = live(entry) { tandem_prefetch(Unmanaged.passUnretained(probe).toOpaque(), 4) }
        }
        for entry in awaitingScratch {
            guard let probe = live(entry), probe.phase == .reading, !probe.watched else { continue }
            receive(probe)
            if probe.phase == .reading && probe.token == entry.token && !probe.watched { watchOrFail(probe) }
        }
    }

    /// Adds the probe's socket to epoll (edge-triggered, named by the
    /// probe's slot: a socket is closed before its slot is freed, so no event
    /// names a later probe). An event already pending is reported at once.
    private func watch(_ probe: Probe) throws(SystemCallError) {
        var event = tandem_epoll_event(
            EPOLLIN.rawValue | EPOLLOUT.rawValue | EPOLLRDHUP.rawValue | EPOLLET.rawValue, UInt64(probe.slot))
        try systemCall("epoll_ctl", "socket \(probe.fd)", reports: .minusOneAndErrno) {
            epoll_ctl(io, EPOLL_CTL_ADD, probe.fd, &event)
        }
        probe.watched = true
    }

    private func watchOrFail(_ probe: Probe) {
        guard !probe.watched else { return }
        do throws(SystemCallError) {
            try watch(probe)
        } catch {
            finish(probe, .failure(error.checkFailure))
        }
    }

    /// Closes the probe's socket, if it has one, with a reset.
    private func closeSocket(_ probe: Probe) {
        guard probe.fd >= 0 else { return }
        TCPSocket.abort(probe.fd)
        probe.fd = -1
        probe.watched = false
    }

    private func receive(_ probe: Probe) {
        guard let request = probe.request, var reader = probe.reader else { return }
        // Out of the probe while it is fed: its buffer is not copied.
        probe.reader = nil
        defer { if probe.phase == .reading { probe.reader = reader } }
        while true {
            let n: Int
            let progress: HTTPResponseReader.Progress
            do throws(SystemCallError) {
                let got = try nonBlockingSystemCall("read", "a check's answer", reports: .minusOneAndErrno) {
                    recv(probe.fd, buffer.baseAddress, buffer.count, 0)
                }
                guard let got else { return }  // nothing more has come yet
                n = got
                if n > 0 {
                    progress = reader.feed(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
                } else {
                    // A kept connection the real closed just before the check.
                    if probe.reused && !reader.sawBytes { return reconnect(probe) }
                    progress = reader.closed()
                }
            } catch {
                if probe.reused && !reader.sawBytes { return reconnect(probe) }
                n = -1
                progress = .failed(error.checkFailure)
            }
            switch progress {
            case .more:
                if n == 0 { return finish(probe, .failure("connection closed before the check completed")) }
            case .done(let reusable):
                // A kept connection the real timed out while it was idle
                // (out of epoll, nobody read its 408 then): the same check
                // goes on over a new connection, as browsers do.
                if probe.reused && reader.status == 408 { return reconnect(probe) }
                let (result, keepAlive) = request._withUnsafeGuaranteedRef {
                    ($0.options.judge(status: reader.status, body: reader.body), $0.keepAlive)
                }
                return finish(probe, result, keep: reusable && keepAlive)
            case .failed(let why):
                // Bytes the real wrote on the idle connection, not an answer:
                // the verdict is a new connection's.
                if probe.reused { return reconnect(probe) }
                return finish(probe, .failure(why))
            }
        }
    }

    /// A kept connection failed before any answer: the real closed it while
    /// idle. The same check goes on over a new connection.
    private func reconnect(_ probe: Probe) {
        closeSocket(probe)
        probe.reader = nil
        connect(probe)
    }

    private func finish(_ probe: Probe, _ result: ProbeResult, keep: Bool = false) {
        renewToken(probe)
        if probe.synKey != nil {
            halfOpen.forget(probe)
            // The route may have changed: the source is looked up again.
            if !result.ok { probe.source = nil }
        }
        if !keep {
            closeSocket(probe)
        } else if probe.watched {
            // Kept, and out of epoll until a check needs it again.
            if epoll_ctl(io, EPOLL_CTL_DEL, probe.fd, nil) == 0 {
                probe.watched = false
            } else {
                closeSocket(probe)
            }
        }
        probe.phase = .idle
        probe.reader = nil
        if probe.periodic {
            timers.push(LoopTimer(at: probe.due, slot: probe.slot, token: probe.token))
        } else {
            probes[probe.id] = nil
            freeSlot(probe)
            closeSocket(probe)
        }
        if let report = probe.report {
            report(result)
        } else {
            ended.append((probe.id, result))
        }
    }
}

/// One probe's schedule and connection, owned by its loop's thread. What
/// every check reads and writes comes first, in the object's first cache
/// lines: 10,000 probes do not stay in the cache between their checks.
final class Probe {
    enum Phase { case idle, connecting, sending, reading, external }
    enum Work {
        case tcp
        case http(HTTPRequest)
        case external
    }

    /// Changes at each start and finish: timers of an earlier one are void.
    var token: UInt32 = 0
    /// Its place in the loop's `slots`; -1 once removed.
    var slot: Int32 = -1
    var fd: Int32 = -1
    var phase = Phase.idle
    /// `fd` is in the loop's epoll instance.
    var watched = false
    /// The check runs on a connection kept from an earlier one.
    var reused = false
    var removed = false
    let periodic: Bool
    var due: UInt64
    let intervalNs: UInt64
    let timeoutNs: UInt64
    /// Which of the loop's deadline queues holds its checks' timeouts.
    var deadlineQueue = 0
    var sent = 0
    let work: Work
    /// `work`'s request, held by `work`: read without reference counting,
    /// which would write to the request's memory before it is fetched.
    let request: Unmanaged<HTTPRequest>?
    let id: UInt64
    var reader: HTTPResponseReader?
    let report: (@Sendable (ProbeResult) -> Void)?
    /// A half-open check's SYN in flight: the answer it waits for.
    var synKey: HalfOpen.Key?
    /// The source address of half-open checks (IPv4, network order), from
    /// the route; looked up again after a failed check.
    var source: UInt32?
    let address: SocketAddressBytes
    let target: ProbeTarget

    init(_ spec: CheckLoop.Spec, now: UInt64) {
        id = spec.id
        target = spec.target
        address = SocketAddressBytes(spec.target.address, port: spec.target.port)
        switch spec.target.check.kind {
        case .tcp, .none: work = .tcp
        case .http(let options): work = .http(HTTPRequest(spec.target, options))
        case .https, .tls: work = .external
        }
        request = if case .http(let request) = work { Unmanaged.passUnretained(request) } else { nil }
        intervalNs = max(1_000_000, spec.target.check.timing.intervalNs)
        timeoutNs = max(1_000_000, spec.target.check.timing.timeoutNs)
        periodic = spec.firstDue != nil
        due = spec.firstDue ?? now
        report = spec.report
    }
}

/// An http check's request, made once per probe (a reference: a probe's
/// `work` stays small, in its first cache lines).
final class HTTPRequest {
    /// The request as sent, in memory of its own.
    let bytes: UnsafeMutableRawBufferPointer
    let options: HTTPOptions
    let keepAlive: Bool
    /// A HEAD request: the answer has no body.
    let head: Bool
    /// Bytes of the body kept for the pattern.
    let keepBody: Int

    init(_ target: ProbeTarget, _ options: HTTPOptions) {
        self.options = options
        keepAlive = options.keepAlive
        head = options.method == "HEAD"
        keepBody = options.body == nil ? 0 : Prober.bodyLimit
        let host = target.address.family == .inet ? target.address.description : "[\(target.address)]"
        let text =
            "\(options.method) \(options.path) HTTP/1.1\r\nHost: \(options.host ?? host)\r\n"
            + "User-Agent: tandem-health-check\r\nConnection: \(keepAlive ? "keep-alive" : "close")\r\n\r\n"
        let utf8 = Array(text.utf8)
        bytes = .allocate(byteCount: utf8.count, alignment: 1)
        bytes.copyBytes(from: utf8)
    }

    deinit { bytes.deallocate() }
}

struct LoopTimer {
    var at: UInt64
    var slot: Int32
    var token: UInt32
}

/// Timers in the order they were pushed, which must be their order in time.
private struct DeadlineQueue {
    private var items: [LoopTimer] = []
    private var head = 0

    var first: LoopTimer? { head < items.count ? items[head] : nil }

    mutating func push(_ timer: LoopTimer) { items.append(timer) }

    mutating func pop() {
        head += 1
        if head == items.count {
            items.removeAll(keepingCapacity: true)
            head = 0
        } else if head >= 4096 && head * 2 >= items.count {
            items.removeFirst(head)
            head = 0
        }
    }
}

/// Timers by time in slots of a millisecond, over a horizon of a few
/// seconds, the later ones in a heap: starting and ending a timer is an
/// append and a read, not a heap's reordering, for the checks that recur
/// every interval.
struct TimerWheel {
    private static let slotNs: UInt64 = 1_000_000
    private static let horizon: UInt64 = 4096
    private var slots = [[LoopTimer]](repeating: [], count: Int(horizon))
    private var later = TimerHeap()
    /// The slot (time / slotNs) looked at next: slots before it are empty;
    /// a timer pushed for an earlier time goes into it. Never past now.
    private var cursor: UInt64 = 0
    /// Timers in `slots`.
    private var count = 0
    private var scratch: [LoopTimer] = []

    mutating func push(_ timer: LoopTimer) {
        let slot = max(cursor, timer.at / Self.slotNs)
        if cursor > 0 && slot - cursor < Self.horizon {
            slots[Int(slot % Self.horizon)].append(timer)
            count += 1
        } else {
            later.push(timer)
        }
    }

    /// When the first timer is due, or a little before; nil if none is.
    var earliest: UInt64? {
        if count > 0 {
            let first = slots[Int(cursor % Self.horizon)]
            // The current slot holds timers pushed late: their own times.
            if let at = first.lazy.map(\.at).min() { return at }
            for i in 1..<Self.horizon where !slots[Int((cursor + i) % Self.horizon)].isEmpty {
                return (cursor + i) * Self.slotNs
            }
        }
        return later.first?.at
    }

    /// Moves every timer due at `now` to `due`, slot by slot.
    mutating func popDue(_ now: UInt64, into due: inout [LoopTimer]) {
        let nowSlot = now / Self.slotNs
        while true {
            if count == 0 {
                // Nothing in the slots: the cursor jumps.
                cursor = max(cursor, min(nowSlot, later.first.map { $0.at / Self.slotNs } ?? nowSlot))
            }
            // Timers that come within the horizon move to their slot.
            while let next = later.first, next.at / Self.slotNs < cursor + Self.horizon {
                later.pop()
                slots[Int(max(cursor, next.at / Self.slotNs) % Self.horizon)].append(next)
                count += 1
            }
            let index = Int(cursor % Self.horizon)
            if !slots[index].isEmpty {
                swap(&scratch, &slots[index])
                for timer in scratch {
                    if timer.at <= now {
                        count -= 1
                        due.append(timer)
                    } else {
                        // Later in the current slot: kept for the next call.
                        slots[index].append(timer)
                    }
                }
                scratch.removeAll(keepingCapacity: true)
            }
            guard cursor < nowSlot else { return }
            cursor += 1
        }
    }
}

/// A binary min-heap of timers by time.
struct TimerHeap {
    private var items: [LoopTimer] = []

    var first: LoopTimer? { items.first }

    mutating func push(_ timer: LoopTimer) {
        items.append(timer)
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard items[i].at < items[parent].at else { break }
            items.swapAt(i, parent)
            i = parent
        }
    }

    mutating func pop() {
        guard items.count > 1 else {
            items.removeAll(keepingCapacity: true)
            return
        }
        items.swapAt(0, items.count - 1)
        items.removeLast()
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var least = i
            if l < items.count && items[l].at < items[least].at { least = l }
            if r < items.count && items[r].at < items[least].at { least = r }
            if least == i { break }
            items.swapAt(i, least)
            i = least
        }
    }
}
