/** cron's --exec application (src/daemon/application.ts): a real child process, stopped and killed. */
import { expect, test } from "bun:test";
import { Application } from "../../src/daemon/application.ts";

function recorder() {
  const events: string[] = [];
  return { events, emit: (event: string) => void events.push(event) };
}

test("a signal that comes after the application exited on its own is not forwarded, and arms no kill: cron exits when its work is done", async () => {
  const { events, emit } = recorder();
  const app = Application.start(["true"], { stdoutToStderr: false }, emit as never);
  expect(await app.exited).toBe(0);
  app.stop("SIGTERM", 100);
  await Bun.sleep(300);
  expect(events).toEqual(["exec-started", "exec-exited"]);
});

test("an application that ignores the forwarded signal is killed after the stop timeout", async () => {
  const { events, emit } = recorder();
  const app = Application.start(["sh", "-c", "trap '' TERM; sleep 5"], { stdoutToStderr: false }, emit as never);
  await Bun.sleep(100); // the trap is set
  app.stop("SIGTERM", 200);
  await app.exited;
  expect(events).toEqual(["exec-started", "signal-forwarded", "exec-killed", "exec-exited"]);
});
