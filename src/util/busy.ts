/**
 * Time spent in one kind of work, summed over its calls: for the debug lines that say where a
 * restore's streamed phase goes (download, decompression and the write overlap, so their durations
 * are told apart only by timing each call). Calls that overlap on several threads each count in full.
 */
export class BusyTime {
  ms = 0;

  /** Run `work`, adding its duration, whether it succeeds or fails. */
  async time<T>(work: () => Promise<T>): Promise<T> {
    const started = performance.now();
    try {
      return await work();
    } finally {
      this.ms += performance.now() - started;
    }
  }
}
