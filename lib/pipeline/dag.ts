/**
 * Structural checks of a pipeline's step graph. Each problem is one line naming the file and field.
 * Edges point from a step to the steps it `needs`.
 */
import type { StepActivity } from '../steps/contracts';

export interface DagStep {
  name: string;
  activity: StepActivity;
  needs: string[];
}

/** What each activity reads from upstream steps (through `ctx.inputs`, keyed by activity). */
export const ACTIVITY_REQUIRES: Record<StepActivity, StepActivity[]> = {
  preprocess: [],
  train: ['preprocess'],
  validate: ['train'],
  checkpoint: ['train'],
  threshold: ['validate'],
  report: ['threshold', 'validate'],
  package: ['checkpoint', 'threshold'],
  promote: ['package', 'preprocess'],
};

const stepLabel = (steps: DagStep[], i: number) => `steps[${i}] (${steps[i].name})`;

function duplicateProblems(file: string, steps: DagStep[]): string[] {
  const seen = new Map<string, number>();
  const out: string[] = [];
  steps.forEach((s, i) => {
    const first = seen.get(s.name);
    if (first !== undefined)
      out.push(`${file}: steps[${i}].name: duplicate step name "${s.name}" (also steps[${first}])`);
    else seen.set(s.name, i);
  });
  return out;
}

function unknownNeedProblems(file: string, steps: DagStep[]): string[] {
  const names = new Set(steps.map((s) => s.name));
  const out: string[] = [];
  steps.forEach((s, i) => {
    for (const n of s.needs) {
      if (!names.has(n)) {
        out.push(
          `${file}: ${stepLabel(steps, i)}.needs: unknown step "${n}" (steps: ${[...names].join(', ')})`,
        );
      }
    }
  });
  return out;
}

/** The first cycle found, as step names with the start repeated at the end; null if acyclic. */
export function findCycle(steps: DagStep[]): string[] | null {
  const byName = new Map(steps.map((s) => [s.name, s]));
  const state = new Map<string, 'active' | 'done'>();
  const stack: string[] = [];
  const visit = (name: string): string[] | null => {
    const st = state.get(name);
    if (st === 'done') return null;
    if (st === 'active') return [...stack.slice(stack.indexOf(name)), name];
    state.set(name, 'active');
    stack.push(name);
    for (const n of byName.get(name)?.needs ?? []) {
      if (!byName.has(n)) continue;
      const c = visit(n);
      if (c) return c;
    }
    stack.pop();
    state.set(name, 'done');
    return null;
  };
  for (const s of steps) {
    const c = visit(s.name);
    if (c) return c;
  }
  return null;
}

/** All steps reachable through `needs` (not including the step itself). */
export function upstreamOf(steps: DagStep[], name: string): DagStep[] {
  const byName = new Map(steps.map((s) => [s.name, s]));
  const seen = new Set<string>();
  const todo = [...(byName.get(name)?.needs ?? [])];
  while (todo.length) {
    const n = todo.pop()!;
    if (seen.has(n)) continue;
    seen.add(n);
    todo.push(...(byName.get(n)?.needs ?? []));
  }
  return steps.filter((s) => seen.has(s.name));
}

function requirementProblems(file: string, steps: DagStep[]): string[] {
  const out: string[] = [];
  steps.forEach((s, i) => {
    const up = upstreamOf(steps, s.name);
    for (const req of ACTIVITY_REQUIRES[s.activity]) {
      if (up.some((u) => u.activity === req)) continue;
      const candidates = steps.filter((c) => c.activity === req).map((c) => c.name);
      const hint = candidates.length
        ? `add ${candidates.map((c) => `"${c}"`).join(' or ')} to its needs`
        : `add a step with activity: ${req} and list it in needs`;
      out.push(
        `${file}: ${stepLabel(steps, i)}.needs: activity "${s.activity}" uses the output of a "${req}" step, but no step with activity ${req} is among its needs (directly or transitively); ${hint}`,
      );
    }
    const byActivity = new Map<string, string[]>();
    for (const u of up) byActivity.set(u.activity, [...(byActivity.get(u.activity) ?? []), u.name]);
    for (const [activity, names] of byActivity) {
      if (names.length > 1) {
        out.push(
          `${file}: ${stepLabel(steps, i)}.needs: more than one upstream step has activity ${activity} (${names.join(', ')}); a step reads its inputs by activity, so this is ambiguous`,
        );
      }
    }
  });
  return out;
}

/** All problems of the graph, one line each; empty when it is a valid DAG. */
export function dagProblems(file: string, steps: DagStep[]): string[] {
  const structural = [...duplicateProblems(file, steps), ...unknownNeedProblems(file, steps)];
  const cycle = findCycle(steps);
  if (cycle) structural.push(`${file}: steps: cycle: ${cycle.join(' -> ')}`);
  return structural.length ? structural : requirementProblems(file, steps);
}

/** Step names in an order where every step comes after its needs (stable w.r.t. YAML order). */
export function topoOrder(steps: DagStep[]): string[] {
  const done = new Set<string>();
  const order: string[] = [];
  while (order.length < steps.length) {
    const next = steps.find((s) => !done.has(s.name) && s.needs.every((n) => done.has(n)));
    if (!next) throw new Error('topoOrder: graph has a cycle');
    done.add(next.name);
    order.push(next.name);
  }
  return order;
}
