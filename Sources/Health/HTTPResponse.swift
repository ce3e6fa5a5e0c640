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
                let line = pending[at..<end].prefix { $0 != UInt8(ascii: ";") }
                guard let size = Int(String(decoding: line, as: UTF8.self).trimmingSpaces, radix: 16), size >= 0
                else { return .failed("bad chunk size in the HTTP response") }
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
    private mutating func readHead(_ head: ArraySlice<UInt8>) -> Progress {
        let text = String(decoding: head, as: UTF8.self)
        var lines = text.split(separator: "\r\n", omittingEmptySubsequences: false)[...]
        guard let first = lines.popFirst() else { return .failed("no HTTP response") }
        let parts = first.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let code = Int(parts[1]), (100...999).contains(code)
        else { return .failed("no HTTP response") }
        if (100...199).contains(code) { return .more }
        status = code
        var length: Int?
        var chunked = false
        var connection = parts[0] == "HTTP/1.0" ? "close" : "keep-alive"
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = line[..<colon].lowercased()
            let value = String(line[line.index(after: colon)...]).trimmingSpaces.lowercased()
            switch name {
            case "content-length":
                guard let n = Int(value), n >= 0, length == nil || length == n else {
                    return .failed("bad Content-Length in the HTTP response")
                }
                length = n
            case "transfer-encoding": chunked = value.hasSuffix("chunked")
            case "connection":
                if value.contains("close") {
                    connection = "close"
                } else if value.contains("keep-alive") {
                    connection = "keep-alive"
                }
            default: break
            }
        }
        closeAfter = connection == "close"
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

extension StringProtocol {
    var trimmingSpaces: String {
        let blank: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        guard let first = firstIndex(where: { !blank($0) }), let last = lastIndex(where: { !blank($0) }) else {
            return ""
        }
        return String(self[first...last])
    }
}
