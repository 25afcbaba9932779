/**
 * Progress of a long run, for a person watching a terminal. The core only reports (ProgressReporter,
 * through the run context); the CLI installs the one renderer, and only when stderr is a terminal and
 * neither --json nor --quiet was given, so pipes, cron mail and logs never see a frame.
 *
 * The renderer is our own few dozen lines rather than a library: cli-progress (measured: +70 KB, no
 * start-up change) needs a known total, has no answer for log lines written while its bar shows, and
 * leaves its line behind on an error or a signal; log-update hides the cursor and brings signal-exit,
 * whose signal handlers would compete with ours. Each of those is what a frame must get right here.
 */
import type { ProgressReporter } from "./context.ts";
import { formatBytes } from "./output.ts";

/** At most this often a frame; about ten a second reads as live without costing anything. */
const FRAME_MS = 100;
/** Rate and ETA only once they mean something. */
const SETTLE_MS = 500;
const CLEAR = "\r\u001b[2K";

type Writable = NodeJS.WriteStream;

/**
 * A reporter that draws one line on `stream` (a terminal), in place, at most every FRAME_MS; the
 * first frame of a phase at once. Anything else written to `stream` or `also` (a log line, the
 * error, the result) first clears the line, so no frame is ever left inside other output, and the
 * line is cleared when the process exits (a second signal exits at once).
 */
export function createTerminalProgress(stream: Writable, also: Writable[] = []): ProgressReporter {
  const write = stream.write.bind(stream) as (text: string) => boolean;
  let shown = false;
  let name = "";
  let total: number | undefined;
  let done = 0;
  let started = 0;
  let lastFrame = Number.NEGATIVE_INFINITY;
  let timer: ReturnType<typeof setInterval> | undefined;

  const clear = () => {
    if (!shown) return;
    shown = false;
    write(CLEAR);
  };
  for (const target of [stream, ...also]) {
    const original = target.write.bind(target) as (...args: unknown[]) => boolean;
    target.write = ((...args: unknown[]) => {
      clear();
      return original(...args);
    }) as typeof target.write;
  }
  process.on("exit", clear);

  const draw = () => {
    if (!name) return;
    lastFrame = performance.now();
    const line = frame(name, done, total, lastFrame - started);
    const width = stream.columns > 1 ? stream.columns - 1 : 79;
    write(`${CLEAR}${line.length > width ? `${line.slice(0, width - 1)}…` : line}`);
    shown = true;
  };

  return {
    phase(phaseName, phaseTotal) {
      name = phaseName;
      total = phaseTotal;
      done = 0;
      started = performance.now();
      if (!timer) {
        timer = setInterval(draw, FRAME_MS);
        // A frame never keeps the process alive.
        timer.unref();
      }
      if (performance.now() - lastFrame >= FRAME_MS) draw();
    },
    rename(phaseName) {
      name = phaseName;
    },
    advance(bytes) {
      done += bytes;
    },
    end() {
      name = "";
      if (timer) clearInterval(timer);
      timer = undefined;
      clear();
    },
  };
}

/** "backing up app: 12.0 MiB of 100 MiB (12%), 45.1 MiB/s, ETA 2 s", or "checking… 3.2 s". */
export function frame(name: string, done: number, total: number | undefined, elapsedMs: number): string {
  if (total === undefined) return `${name}… ${(elapsedMs / 1000).toFixed(1)} s`;
  const shown = Math.min(done, total);
  const percent = total === 0 ? 100 : Math.floor((shown / total) * 100);
  let line = `${name}: ${formatBytes(shown)} of ${formatBytes(total)} (${percent}%)`;
  if (elapsedMs >= SETTLE_MS && shown > 0) {
    const rate = shown / (elapsedMs / 1000);
    line += `, ${formatBytes(Math.round(rate))}/s, ETA ${formatEta((total - shown) / rate)}`;
  }
  return line;
}

function formatEta(seconds: number): string {
  const s = Math.ceil(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} min`;
}
