import { runDoctor, type DoctorReport } from "../ops/doctor.ts";
import { outputArgs, repoArgs } from "./_args.ts";
import { defineVaultCommand } from "./_run.ts";
import { configArgs, openOtherAddressing, resolveTargets } from "../config/targets.ts";

const args = { ...repoArgs, ...configArgs, ...outputArgs } as const;

export default defineVaultCommand({
  meta: { name: "doctor", description: "Probe the repository the way a backup would, and say how to fix what fails" },
  args,
  async execute({ flags, ctx }): Promise<DoctorReport> {
    // With a config file, the repository of its first database (they usually share one).
    const target = resolveTargets(flags, ctx.log, { signal: ctx.signal }).targets[0]!;
    return runDoctor(
      target.storage,
      { partSize: target.settings.partSize, openOtherAddressing: openOtherAddressing(flags, target, ctx.signal) },
      ctx,
    );
  },
  render: (r) =>
    [
      `checking ${r.repo}`,
      ...r.checks.map((c) => `${c.ok ? "ok  " : "FAIL"} ${c.name}: ${c.detail}${c.fix ? `\n     fix: ${c.fix}` : ""}`),
      r.ok ? "a backup to this repository would work" : "a backup to this repository would fail",
    ].join("\n"),
  exitCode: (r) => r.exitCode,
});
