/**
 * Imported first by cli.ts, before citty and the commands load: from here on SIGINT, SIGTERM and
 * SIGHUP are remembered and end the run cleanly (exit 130) instead of killing it half-way.
 */
import { installInterruptHandlers } from "./interrupts.ts";

installInterruptHandlers();
