/**
 * Fault injection for the crash-safety benchmark (bench/faults): with DISTILL_FAULT=<step>:<stage>
 * the process kills itself with SIGKILL when it reaches that step of the commit protocol for that
 * stage, which is what an outside SIGKILL at that moment would do. Unset, this costs one
 * comparison. Steps: after-exit (the stage process exited 0), after-store (objects moved into the
 * store), after-entry (cache entry written), during-swap (old out/ dir moved aside, new one not yet
 * in place).
 */
export function faultPoint(step: string, stageId: string): void {
  const fault = process.env.DISTILL_FAULT;
  if (fault && fault === `${step}:${stageId}`) process.kill(process.pid, 'SIGKILL');
}
