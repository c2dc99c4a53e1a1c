/**
 * Checks on a generated Workflow that Argo's JSON Schema does not make: every DAG dependency names a
 * task, every task names a template, the entrypoint exists, names are unique and valid, and the
 * DAG has no cycle.
 */
import { ARGO_NAME } from './names.js';
import type { Workflow } from './export.js';

export function checkWorkflow(workflow: Workflow): string[] {
  const problems: string[] = [];
  const templates = new Map<string, number>();
  for (const template of workflow.spec.templates) templates.set(template.name, (templates.get(template.name) ?? 0) + 1);
  for (const [name, count] of templates) {
    if (count > 1) problems.push(`template "${name}" is defined ${count} times`);
    if (!ARGO_NAME.test(name)) problems.push(`template name "${name}" is not a valid Argo/Kubernetes name`);
  }
  if (!templates.has(workflow.spec.entrypoint))
    problems.push(`entrypoint "${workflow.spec.entrypoint}" is not a template`);
  for (const template of workflow.spec.templates) {
    const tasks = template.dag?.tasks;
    if (!tasks) continue;
    const names = new Set<string>();
    for (const task of tasks) {
      if (names.has(task.name)) problems.push(`template ${template.name}: task "${task.name}" appears twice`);
      names.add(task.name);
      if (!ARGO_NAME.test(task.name))
        problems.push(`template ${template.name}: task name "${task.name}" is not a valid Argo/Kubernetes name`);
      if (!templates.has(task.template))
        problems.push(`task "${task.name}" uses template "${task.template}", which does not exist`);
    }
    for (const task of tasks) {
      for (const dep of task.dependencies ?? []) {
        if (!names.has(dep))
          problems.push(`task "${task.name}" depends on "${dep}", which is not a task of ${template.name}`);
        if (dep === task.name) problems.push(`task "${task.name}" depends on itself`);
      }
    }
    // Kahn's algorithm: whatever cannot be ordered is on a cycle.
    const remaining = new Map(tasks.map((t) => [t.name, new Set((t.dependencies ?? []).filter((d) => names.has(d)))]));
    let progressed = true;
    while (progressed) {
      progressed = false;
      for (const [name, deps] of remaining) {
        if (deps.size === 0) {
          remaining.delete(name);
          remaining.forEach((d) => d.delete(name));
          progressed = true;
        }
      }
    }
    if (remaining.size > 0)
      problems.push(`template ${template.name}: dependency cycle among ${[...remaining.keys()].join(', ')}`);
  }
  return problems;
}
