/**
 * Pure DAG helpers for the step graph of a pipeline. No Temporal imports and no I/O, so the
 * workflow sandbox can use them and they can be unit-tested directly.
 */
import type { StepState } from '../lib/pipeline/outcome';
import type { StepPlan } from '../lib/pipeline/plan';

/** Problems that make a step graph unrunnable (empty when fine): duplicates, unknown needs, cycles. */
export function findGraphProblems(steps: readonly StepPlan[]): string[] {
  const problems: string[] = [];
  const names = new Set<string>();
  for (const s of steps) {
    if (names.has(s.name)) problems.push(`step '${s.name}' is defined twice`);
    names.add(s.name);
  }
  for (const s of steps) {
    for (const need of s.needs) {
      if (!names.has(need)) problems.push(`step '${s.name}' needs unknown step '${need}'`);
      if (need === s.name) problems.push(`step '${s.name}' needs itself`);
    }
  }
  if (problems.length === 0) {
    const cycle = findCycle(steps);
    if (cycle) problems.push(`steps form a cycle: ${cycle.join(' -> ')}`);
  }
  return problems;
}

function findCycle(steps: readonly StepPlan[]): string[] | null {
  const byName = new Map(steps.map((s) => [s.name, s]));
  const visiting = new Set<string>();
  const done = new Set<string>();
  const stack: string[] = [];
  const visit = (name: string): string[] | null => {
    if (done.has(name)) return null;
    if (visiting.has(name)) return [...stack.slice(stack.indexOf(name)), name];
    visiting.add(name);
    stack.push(name);
    for (const need of byName.get(name)?.needs ?? []) {
      const cycle = visit(need);
      if (cycle) return cycle;
    }
    stack.pop();
    visiting.delete(name);
    done.add(name);
    return null;
  };
  for (const s of steps) {
    const cycle = visit(s.name);
    if (cycle) return cycle;
  }
  return null;
}

/** Step name -> all steps it depends on, directly or transitively (graph must be acyclic). */
export function upstreamClosure(steps: readonly StepPlan[]): Map<string, string[]> {
  const byName = new Map(steps.map((s) => [s.name, s]));
  const memo = new Map<string, Set<string>>();
  const closure = (name: string): Set<string> => {
    const known = memo.get(name);
    if (known) return known;
    const all = new Set<string>();
    for (const need of byName.get(name)?.needs ?? []) {
      all.add(need);
      for (const n of closure(need)) all.add(n);
    }
    memo.set(name, all);
    return all;
  };
  // Keep plan order so that inputs are assembled deterministically.
  return new Map(steps.map((s) => [s.name, steps.map((t) => t.name).filter((n) => closure(s.name).has(n))]));
}

export function isDone(state: StepState | undefined): boolean {
  return state === 'completed' || state === 'reused';
}

/** Pending steps whose needs have all finished, in plan order. */
export function readySteps(
  steps: readonly StepPlan[],
  states: Readonly<Record<string, StepState>>,
): StepPlan[] {
  return steps.filter((s) => states[s.name] === 'pending' && s.needs.every((n) => isDone(states[n])));
}
