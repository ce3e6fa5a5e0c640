/// Reads one HTTP/1.x response as it arrives, a read at a time, for the
/// epoll checker: the status, the body a pattern is matched against, and
/// whether the connection may carry the next check (the response said
/// nothing against keep-alive and its end was known from its framing).
///
/// A health check needs only that much of HTTP, so this is not a general
/// client: no pipelining, trailers are skipped, interim (1xx) responses are
/// passed over.
struct HTTPResponseReader {
    enum Progress: Equatable {
        case more
        /// The whole response; `reusable`: the connection may be kept.
        case done(reusable: Bool)
        case failed(String)
    }

    private enum Framing { case length(Int), chunked, untilClose, none }
    private enum Stage {
        case head
        case body(Framing)
        /// Chunked: the size line of the next chunk.
        case chunkSize
        /// Chunked: bytes of the chunk left, then its CRLF.
        case chunkData(Int)
        case chunkEnd
        case trailers
        case done
    }

    /// Largest status line plus headers accepted.
    static let headLimit = 16 * 1024

    let headRequest: Bool
    /// Bytes of body kept for the pattern; 0 when no pattern is set.
    let keepBody: Int
    private(set) var status: Int?
    private(set) var body: [UInt8] = []
    private var stage = Stage.head
    private var pending: [UInt8] = []
    private var closeAfter = false
    private(set) var sawBytes = false

    init(headRequest: Bool, keepBody: Int) {
        self.headRequest = headRequest
        self.keepBody = keepBody
    }

    /// Feeds bytes read from the connection.
    mutating func feed(_ bytes: UnsafeRawBufferPointer) -> Progress {
        if bytes.count > 0 { sawBytes = true }
        pending.append(contentsOf: bytes)
        return advance()
    }

    /// The peer closed the connection: a response framed by the close ends
    /// here; any other is cut short.
    mutating func closed() -> Progress {
        if case .body(.untilClose) = stage {
            stage = .done
            return .done(reusable: false)
        }
        return .failed(status == nil ? "connection closed before the check completed" : "response cut short")
    }

    private mutating func advance() -> Progress {
        var at = 0
        defer { pending.removeFirst(at) }
        while true {
            switch stage {
            case .head:
                guard let end = Self.find(Self.blankLine, in: pending, from: at) else {
                    if pending.count - at > Self.headLimit { return .failed("HTTP response headers too long") }
                    return .more
                }
                let head = pending[at..<end]
                at = end + 4
                switch readHead(head) {
                case .failed(let why): return .failed(why)
                case .more: continue  // an interim response; the real one follows
                case .done: break
                }
            case .body(.length(let left)):
                let take = min(left, pending.count - at)
                keep(pending[at..<at + take])
                at += take
                if left - take > 0 {
                    stage = .body(.length(left - take))
                    return .more
                }
                stage = .done
            case .body(.untilClose):
                keep(pending[at...])
                at = pending.count
                return .more
            case .body(.none):
                stage = .done
            case .body(.chunked), .chunkSize:
                guard let end = Self.find(Self.lineEnd, in: pending, from: at) else { return .more }
                var line = pending[at..<end].prefix { $0 != UInt8(ascii: ";") }
                while let c = line.last, c == 32 || c == 9 { line = line.dropLast() }
                guard let size = Self.number(line, radix: 16) else {
                    return .failed("bad chunk size in the HTTP response")
                }
                at = end + 2
                stage = size == 0 ? .trailers : .chunkData(size)
            case .chunkData(let left):
                let take = min(left, pending.count - at)
                keep(pending[at..<at + take])
                at += take
                if left - take > 0 {
                    stage = .chunkData(left - take)
                    return .more
                }
                stage = .chunkEnd
            case .chunkEnd:
                guard pending.count - at >= 2 else { return .more }
                at += 2
                stage = .chunkSize
            case .trailers:
                guard let end = Self.find(Self.lineEnd, in: pending, from: at) else { return .more }
                stage = end == at ? .done : .trailers
                at = end + 2
            case .done:
                // Bytes after the response: the connection is out of step.
                return .done(reusable: !closeAfter && at == pending.count)
            }
        }
    }

    /// Reads the status line and headers; `.more` for an interim response.
    /// Byte by byte, in place, with no strings or arrays: it runs once per
    /// check.
    private mutating func readHead(_ head: ArraySlice<UInt8>) -> Progress {
        let firstEnd = Self.endOfLine(head, from: head.startIndex)
        let first = head[head.startIndex..<firstEnd]
        guard first.count >= 12, first.starts(with: Self.http1),
            first[first.startIndex + 8] == UInt8(ascii: " "),
            let code = Self.number(first[(first.startIndex + 9)..<(first.startIndex + 12)], radix: 10)
        else { return .failed("no HTTP response") }
        if (100...199).contains(code) { return .more }
        status = code
        var length: Int?
        var chunked = false
        var close = first[first.startIndex + 7] == UInt8(ascii: "0")
        var at = firstEnd
        while at < head.endIndex {
            at += 2
            let end = Self.endOfLine(head, from: at)
            defer { at = end }
            let line = head[at..<end]
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { continue }
            let name = line[line.startIndex..<colon]
            var value = line[(colon + 1)...]
            while let c = value.first, c == 32 || c == 9 { value = value.dropFirst() }
            while let c = value.last, c == 32 || c == 9 { value = value.dropLast() }
            if Self.same(name, "content-length") {
                guard let n = Self.number(value, radix: 10), length == nil || length == n else {
                    return .failed("bad Content-Length in the HTTP response")
                }
                length = n
            } else if Self.same(name, "transfer-encoding") {
                chunked = Self.endsWith(value, "chunked")
            } else if Self.same(name, "connection") {
                if Self.contains(value, "close") {
                    close = true
                } else if Self.contains(value, "keep-alive") {
                    close = false
                }
            }
        }
        closeAfter = close
        if headRequest || code == 204 || code == 304 {
            stage = .body(.none)
        } else if chunked {
            stage = .body(.chunked)
        } else if let length {
            stage = .body(.length(length))
        } else {
            closeAfter = true
            stage = .body(.untilClose)
        }
        return .done(reusable: false)
    }

    /// Where the CRLF-ended line starting at `from` ends: its CR, or the end
    /// of `bytes`.
    static func endOfLine(_ bytes: ArraySlice<UInt8>, from: Int) -> Int {
        var i = from
        while i + 1 < bytes.endIndex {
            if bytes[i] == 13 && bytes[i + 1] == 10 { return i }
            i += 1
        }
        return bytes.endIndex
    }

    static let http1: [UInt8] = Array("HTTP/1.".utf8)

    /// A whole number of at most 18 digits, nothing else.
    static func number(_ bytes: ArraySlice<UInt8>, radix: Int) -> Int? {
        guard !bytes.isEmpty, bytes.count <= 15 else { return nil }
        var n = 0
        for b in bytes {
            let digit: Int
            switch b {
            case 48...57: digit = Int(b - 48)
            case 97...102 where radix == 16: digit = Int(b - 87)
            case 65...70 where radix == 16: digit = Int(b - 55)
            default: return nil
            }
            n = n * radix + digit
        }
        return n
    }

    static func lower(_ b: UInt8) -> UInt8 { b >= 65 && b <= 90 ? b + 32 : b }

    /// Equal to the lower-case ASCII `name`, ignoring case.
    static func same(_ bytes: ArraySlice<UInt8>, _ name: StaticString) -> Bool {
        guard bytes.count == name.utf8CodeUnitCount else { return false }
        return name.withUTF8Buffer { zip(bytes, $0).allSatisfy { lower($0) == $1 } }
    }

    static func contains(_ bytes: ArraySlice<UInt8>, _ word: StaticString) -> Bool {
        let n = word.utf8CodeUnitCount
        guard bytes.count >= n else { return false }
        var i = bytes.startIndex
        while i + n <= bytes.endIndex {
            if same(bytes[i..<i + n], word) { return true }
            i += 1
        }
        return false
    }

    static func endsWith(_ bytes: ArraySlice<UInt8>, _ word: StaticString) -> Bool {
        let n = word.utf8CodeUnitCount
        return bytes.count >= n && same(bytes.suffix(n), word)
    }

    private mutating func keep(_ bytes: ArraySlice<UInt8>) {
        guard body.count < keepBody else { return }
        body.append(contentsOf: bytes.prefix(keepBody - body.count))
    }

    static let blankLine: [UInt8] = Array("\r\n\r\n".utf8)
    static let lineEnd: [UInt8] = Array("\r\n".utf8)

    /// Index of the first `needle` in `bytes` at or after `from`.
    static func find(_ needle: [UInt8], in bytes: [UInt8], from: Int) -> Int? {
        guard bytes.count - from >= needle.count else { return nil }
        var i = from
        let last = bytes.count - needle.count
        while i <= last {
            if bytes[i] == needle[0] {
                var j = 1
                while j < needle.count && bytes[i + j] == needle[j] { j += 1 }
                if j == needle.count { return i }
            }
            i += 1
        }
        return nil
    }
}
