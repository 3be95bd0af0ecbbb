// The WebAssembly runner, run by V8 in the function's own isolate. It compiles the module (handed over as
// __nexData) once; every trigger then gets a new instance, so memory, globals, tables and the WASI state
// (arguments, stdin, stdout, stderr) are fresh each time, while V8's compiled code is shared. When the
// module's one memory was turned into the import nex.memory (settings.memory, see WasmModuleRewrite.swift),
// a small memory is zeroed and handed to the next instance instead of being mapped anew: the data segments
// are written at instantiation, so the instance starts exactly as with a memory of its own.
//
// It implements WASI preview1 for a command module: the trigger subject is argv[1], the payload is stdin,
// everything written to stdout is the reply, and stderr goes to the logs. A JetStream trigger's context (what
// a JavaScript function gets as ctx) is the JSON in NEX_TRIGGER_CONTEXT. Exiting with code 65 (EX_DATAERR)
// marks a failure as permanent: the message is dead-lettered without retries. There is no file system, no
// network and no sleeping: those calls answer an error code. Host services are the `nex` import module
// (see examples/wasm/nex_host.h).
//
// Evaluates to (settings) => (subject, payload, ctx) => reply; the Swift side applies it to its settings.
(settings) => {
  'use strict';
  const errno = { success: 0, badf: 8, fault: 21, fbig: 22, inval: 28, nosys: 52, notsup: 58, spipe: 70 };
  const encoder = new TextEncoder();
  const decoder = new TextDecoder();
  const cString = (text) => {
    const bytes = encoder.encode(text);
    const out = new Uint8Array(bytes.length + 1);
    out.set(bytes);
    return out;
  };

  let module;
  try {
    module = new WebAssembly.Module(__nexData);
  } catch (e) {
    throw `not a WebAssembly module: ${e.message}`;
  }
  delete globalThis.__nexData;  // the compiled module is all that is needed from here on

  class Exit { constructor(code) { this.code = code; } }
  class ReplyTooLarge {}

  // The trigger being run (one at a time per isolate) and its instance's memory.
  let run = null;
  let memory = null;
  const view = () => new DataView(memory.buffer);
  const bytes = () => new Uint8Array(memory.buffer);
  const environment = Object.entries(settings.environment).map(([k, v]) => cString(`${k}=${v}`));
  // The exit code that says retrying cannot help (sysexits' EX_DATAERR: the input was wrong).
  const permanentExitCode = 65;

  // Copies strings and their pointer table into guest memory (argv and environ share the layout).
  const sizes = (list) => (countPointer, sizePointer) => {
    const v = view();
    v.setUint32(countPointer, list().length, true);
    v.setUint32(sizePointer, list().reduce((n, s) => n + s.length, 0), true);
    return errno.success;
  };
  const strings = (list) => (pointers, buffer) => {
    const v = view();
    const m = bytes();
    list().forEach((s, i) => {
      v.setUint32(pointers + 4 * i, buffer, true);
      m.set(s, buffer);
      buffer += s.length;
    });
    return errno.success;
  };
  const iovecs = (iovs, count) => {
    const v = view();
    const out = [];
    for (let i = 0; i < count; i++) out.push([v.getUint32(iovs + 8 * i, true), v.getUint32(iovs + 8 * i + 4, true)]);
    return out;
  };
  const isStdio = (fd) => fd >= 0 && fd <= 2;

  const wasi = {
    args_sizes_get: sizes(() => run.args),
    args_get: strings(() => run.args),
    environ_sizes_get: sizes(() => run.environment),
    environ_get: strings(() => run.environment),
    fd_read(fd, iovs, count, readPointer) {
      if (fd !== 0) return errno.badf;
      const m = bytes();
      let total = 0;
      for (const [buffer, length] of iovecs(iovs, count)) {
        const n = Math.min(length, run.stdin.length - run.stdinOffset);
        if (buffer + n > m.length) return errno.fault;
        m.set(run.stdin.subarray(run.stdinOffset, run.stdinOffset + n), buffer);
        run.stdinOffset += n;
        total += n;
        if (n < length) break;
      }
      view().setUint32(readPointer, total, true);
      return errno.success;
    },
    fd_write(fd, iovs, count, writtenPointer) {
      if (fd !== 1 && fd !== 2) return errno.badf;
      const m = bytes();
      let total = 0;
      for (const [buffer, length] of iovecs(iovs, count)) {
        if (buffer + length > m.length) return errno.fault;
        if (fd === 1) {
          if (run.stdoutBytes + length > settings.maxReplyBytes) throw new ReplyTooLarge();
          run.stdout.push(m.slice(buffer, buffer + length));
          run.stdoutBytes += length;
        } else if (run.stderrBytes < settings.maxLogBytes) {
          const kept = Math.min(length, settings.maxLogBytes - run.stderrBytes);
          run.stderr.push(m.slice(buffer, buffer + kept));
          run.stderrBytes += kept;
        }
        total += length;
      }
      view().setUint32(writtenPointer, total, true);
      return errno.success;
    },
    fd_close: (fd) => (isStdio(fd) ? errno.success : errno.badf),
    fd_seek: (fd) => (isStdio(fd) ? errno.spipe : errno.badf),
    fd_tell: (fd) => (isStdio(fd) ? errno.spipe : errno.badf),
    fd_sync: (fd) => (isStdio(fd) ? errno.success : errno.badf),
    fd_datasync: (fd) => (isStdio(fd) ? errno.success : errno.badf),
    fd_fdstat_set_flags: (fd) => (isStdio(fd) ? errno.notsup : errno.badf),
    fd_fdstat_get(fd, pointer) {
      if (!isStdio(fd)) return errno.badf;
      // A stream of unknown type (like a pipe, not a terminal): read rights on stdin, write rights on the others.
      const rights = fd === 0 ? 0x2n : 0x40n;
      const v = view();
      v.setUint8(pointer, 0);
      v.setUint16(pointer + 2, 0, true);
      v.setBigUint64(pointer + 8, rights, true);
      v.setBigUint64(pointer + 16, 0n, true);
      return errno.success;
    },
    fd_filestat_get(fd, pointer) {
      if (!isStdio(fd)) return errno.badf;
      bytes().fill(0, pointer, pointer + 64);
      return errno.success;
    },
    // No preopened directories: the scan for them ends at the first descriptor after stdio.
    fd_prestat_get: () => errno.badf,
    fd_prestat_dir_name: () => errno.badf,
    clock_res_get(clock, pointer) {
      if (clock < 0 || clock > 3) return errno.inval;
      view().setBigUint64(pointer, 1000n, true);
      return errno.success;
    },
    clock_time_get(clock, precision, pointer) {
      if (clock < 0 || clock > 3) return errno.inval;
      view().setBigUint64(pointer, __nexNow(clock === 0 ? 0 : 1), true);
      return errno.success;
    },
    random_get(buffer, length) {
      __nexRandom(new Uint8Array(memory.buffer, buffer, length));
      return errno.success;
    },
    proc_exit(code) { throw new Exit(code >>> 0); },
    sched_yield: () => errno.success,
  };
  // A pointer outside the guest's memory is the guest's error (EFAULT), not a trap.
  for (const [name, f] of Object.entries(wasi)) {
    wasi[name] = (...args) => {
      try {
        return f(...args);
      } catch (e) {
        if (e instanceof RangeError) return errno.fault;
        throw e;
      }
    };
  }

  // nex.host_call(service, method, args JSON, result buffer) -> length, negated for an error message, or
  // -(needed + 1e9) when the buffer is too small.
  const hostCall = (servicePointer, serviceLength, methodPointer, methodLength, argsPointer, argsLength,
    resultPointer, capacity) => {
    const m = bytes();
    const text = (p, n) => {
      if (p + n > m.length) throw new WebAssembly.RuntimeError('host call arguments out of bounds');
      return decoder.decode(m.subarray(p, p + n));
    };
    const service = text(servicePointer, serviceLength);
    const method = text(methodPointer, methodLength);
    const args = text(argsPointer, argsLength);
    let result;
    let failed = false;
    try {
      result = __nexHost(service, method, args);
    } catch (e) {
      result = e instanceof Error ? e.message : String(e);
      failed = true;
    }
    const out = encoder.encode(result);
    if (out.length > capacity) return -(out.length + 1000000000);
    if (resultPointer + out.length > m.length) throw new WebAssembly.RuntimeError('host call result out of bounds');
    m.set(out, resultPointer);
    return failed ? -out.length : out.length;
  };

  // Every import is checked now, so a module that cannot run is refused at deploy, not at its first trigger.
  const provided = { wasi_snapshot_preview1: {}, nex: {} };
  let importsMemory = false;
  for (const { module: from, name, kind } of WebAssembly.Module.imports(module)) {
    if (kind === 'memory' && from === 'nex' && name === 'memory' && settings.memory && !importsMemory) {
      importsMemory = true;
    } else if (kind === 'function' && from === 'wasi_snapshot_preview1') {
      provided[from][name] = wasi[name] || (() => errno.nosys);
    } else if (kind === 'function' && from === 'nex' && name === 'host_call') {
      provided.nex.host_call = hostCall;
    } else {
      throw `the module imports ${from}.${name} (${kind}); Nex provides WASI preview1 functions and nex.host_call`;
    }
  }
  const exports = WebAssembly.Module.exports(module);
  if (!exports.some((e) => e.name === '_start' && e.kind === 'function')) {
    throw 'the module exports no _start function: build a WASI command (a main function)';
  }
  if (!importsMemory && !exports.some((e) => e.name === 'memory' && e.kind === 'memory')) {
    throw 'the module exports no memory';
  }

  // Zeroing beats mapping a new memory up to about 2 MiB (measured: 11 µs against about 100 µs for 128 KiB);
  // past that a fresh mapping is cheaper, and a memory the guest grew is never reused.
  const reusablePages = 32;
  let spareMemory = null;
  const memoryForInstance = () => {
    const { initial, maximum } = settings.memory;
    const spare = spareMemory;
    spareMemory = null;
    if (spare && spare.buffer.byteLength === initial * 65536) {
      new Uint8Array(spare.buffer).fill(0);
      return spare;
    }
    return new WebAssembly.Memory({ initial, maximum });
  };

  const concat = (chunks, total) => {
    const out = new Uint8Array(total);
    let at = 0;
    for (const c of chunks) {
      out.set(c, at);
      at += c.length;
    }
    return out;
  };
  const forwardStderr = () => {
    const text = decoder.decode(concat(run.stderr, run.stderrBytes));
    for (const line of text.split('\n')) if (line.length > 0) console.error(line);
    return text;
  };

  return (subject, payload, ctx) => {
    run = {
      args: [cString(settings.name), cString(subject)], stdin: payload, stdinOffset: 0,
      environment: ctx === undefined ? environment
        : [...environment, cString(`NEX_TRIGGER_CONTEXT=${JSON.stringify(ctx)}`)],
      stdout: [], stdoutBytes: 0, stderr: [], stderrBytes: 0,
    };
    let code = 0;
    try {
      if (importsMemory) {
        provided.nex.memory = memoryForInstance();
        memory = provided.nex.memory;  // set before instantiation: a start function may call WASI
      }
      const instance = new WebAssembly.Instance(module, provided);
      if (!importsMemory) memory = instance.exports.memory;
      instance.exports._start();
    } catch (e) {
      if (e instanceof Exit) {
        code = e.code;
      } else if (e instanceof ReplyTooLarge) {
        forwardStderr();
        throw `the reply is larger than ${settings.maxReplyBytes} bytes`;
      } else {
        forwardStderr();
        throw `trapped: ${e}`;
      }
    } finally {
      if (importsMemory && settings.memory.initial <= reusablePages) spareMemory = provided.nex.memory;
      provided.nex.memory = undefined;
      memory = null;
    }
    const errors = forwardStderr();
    if (code !== 0) {
      const text = `exited with code ${code}${errors ? ': ' + errors.slice(0, 4096).trimEnd() : ''}`;
      // An object without a stack, so the error reads as the text (and where it was thrown), not a trace.
      if (code === permanentExitCode) throw { permanent: true, toString: () => text };
      throw text;
    }
    const reply = concat(run.stdout, run.stdoutBytes);
    run = null;
    return reply;
  };
}
