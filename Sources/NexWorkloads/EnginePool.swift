import Foundation

/// The engine instances of one function (V8 isolates), each used by one trigger at a time: up to `capacity`
/// of them, made when a trigger finds none free. The first is made at deploy, so a function that cannot
/// start is refused then. Each engine comes with a ``TriggerSlot`` that says which trigger it is running.
public final class EnginePool<Engine: Sendable>: @unchecked Sendable {
    // @unchecked: every mutable field is guarded by `condition`.
    /// An engine and the trigger it runs now (read by its host-call callbacks, on the engine's thread).
    public typealias Entry = (engine: Engine, slot: TriggerSlot)

    /// How many engines may exist at once.
    public let capacity: Int
    private let make: @Sendable (TriggerSlot) throws -> Engine
    private let condition = NSCondition()
    private var idle: [Entry] = []
    private var made = 0
    private var closed = false

    /// Makes the first engine now; throws its error.
    public init(capacity: Int, make: @escaping @Sendable (TriggerSlot) throws -> Engine) throws {
        self.capacity = max(1, capacity)
        self.make = make
        let slot = TriggerSlot()
        idle = [(try make(slot), slot)]
        made = 1
    }

    /// Runs `body` with a free engine, making one when none is free and fewer than `capacity` exist (and
    /// waiting for one otherwise). Fails when the pool is closed or a new engine cannot be made.
    public func withEngine<R>(for trigger: Trigger, _ body: (Engine) -> R) -> Result<R, EnginePoolError> {
        let entry: Entry
        switch take() {
        case .failure(let error): return .failure(error)
        case .success(let e): entry = e
        }
        entry.slot.traceParent = trigger.traceParent
        let result = body(entry.engine)
        entry.slot.traceParent = nil
        condition.lock()
        if !closed { idle.append(entry) }
        condition.signal()
        condition.unlock()
        return .success(result)
    }

    private func take() -> Result<Entry, EnginePoolError> {
        condition.lock()
        while true {
            if closed {
                condition.unlock()
                return .failure(EnginePoolError("the function is not running"))
            }
            if let entry = idle.popLast() {
                condition.unlock()
                return .success(entry)
            }
            if made < capacity { break }
            condition.wait()
        }
        made += 1
        condition.unlock()
        let slot = TriggerSlot()
        do { return .success((try make(slot), slot)) } catch {
            condition.lock()
            made -= 1
            condition.signal()
            condition.unlock()
            return .failure(EnginePoolError("cannot start another instance of the function: \(error)"))
        }
    }

    /// Drops the idle engines; engines in use are dropped when their trigger ends. Later triggers fail.
    public func close() {
        condition.lock()
        closed = true
        idle.removeAll()
        condition.broadcast()
        condition.unlock()
    }
}

extension EnginePool {
    /// Runs one trigger on a free engine and times it: `body` gives the reply or the failure.
    public func run(_ trigger: Trigger, _ body: (Engine) -> Result<[UInt8], TriggerFailure>) -> TriggerResult {
        switch withEngine(for: trigger, { engine in TriggerResult.timed { body(engine) } }) {
        case .success(let result): return result
        case .failure(let error): return .failure(error.description, elapsedNanos: 0)
        }
    }
}

/// What an engine's callbacks need to know about the trigger it runs: its trace context. Written before and
/// after each trigger by the pool, read by host calls on the same thread in between.
public final class TriggerSlot: @unchecked Sendable {
    // @unchecked: one engine runs one trigger at a time, on one thread; the pool hands the slot over under
    // its lock, which orders the accesses.
    public var traceParent: String?
    init() {}
}

/// Why a trigger found no engine.
public struct EnginePoolError: Error, Sendable, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}
