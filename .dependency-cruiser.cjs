/**
 * Import rules (`npm run lint:imports`, run first by `npm test`): imports point down the layers of
 * the README's Architecture section, and nothing imports in a circle.
 *
 *   client.ts worker.ts cli/        entry points
 *   temporal/                       Temporal client, dev server, worker runtime (the edge's plumbing)
 *   workflows/ activities/          the Temporal edge
 *   lib/                            the domain: no Temporal, no edge imports; inside it, from the top:
 *     registry.ts                   composition root: binds every step implementation
 *     report/ serve/
 *     train/ eval/ pipeline/
 *     model/ data/ monitor/
 *     steps/ (the step contract)  config/  util/
 *
 * Type-only imports (`import type`) are cruised too (tsPreCompilationDeps), so a circle of types
 * is a circle; only the workflow rule lets types through, because the workflow bundle drops them.
 */

/** lib modules the workflow bundle may import values from: plain data, no imports but types. */
const WORKFLOW_SAFE_LIB = '^lib/pipeline/plan\\.ts$';

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment:
        'Files that import each other (types included): split the shared part into a file both import.',
      from: {},
      to: { circular: true },
    },
    {
      name: 'lib-not-to-edge',
      severity: 'error',
      comment: 'lib/ is the domain: it never imports the Temporal edge or the entry points.',
      from: { path: '^lib/' },
      to: { path: '^(workflows|activities|temporal|cli|bench|test)/|^(client|worker)\\.ts$' },
    },
    {
      name: 'lib-no-temporal',
      severity: 'error',
      comment: 'lib/ can be used and tested without a Temporal server: no @temporalio import.',
      from: { path: '^lib/' },
      to: { path: '(^|/)node_modules/@temporalio/' },
    },
    {
      name: 'workflows-only-types-from-lib',
      severity: 'error',
      comment:
        'Workflow code runs in the deterministic sandbox: from lib/ it takes types only (import type), ' +
        'values only from the plain-data plan module.',
      from: { path: '^workflows/' },
      to: { path: '^lib/', pathNot: WORKFLOW_SAFE_LIB, dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'workflow-safe-lib-imports-types-only',
      severity: 'error',
      comment: 'What the workflow bundle imports from lib/ must not pull more of lib/ in with it.',
      from: { path: WORKFLOW_SAFE_LIB },
      to: { dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'workflows-not-to-edge',
      severity: 'error',
      comment:
        'Workflows import @temporalio/workflow (and common), their own files and lib types: ' +
        'no activities, no Temporal client/worker code, no Node built-ins.',
      from: { path: '^workflows/' },
      to: {
        path: '^(activities|temporal|cli)/|^(client|worker)\\.ts$|(^|/)node_modules/@temporalio/(client|worker|activity|testing)/',
      },
    },
    {
      name: 'workflows-no-node-builtins',
      severity: 'error',
      from: { path: '^workflows/' },
      to: { dependencyTypes: ['core'] },
    },
    {
      name: 'activities-not-up',
      severity: 'error',
      comment: 'Activities adapt lib/ steps to Temporal: they do not import the entry points or the CLI.',
      from: { path: '^activities/' },
      to: { path: '^(temporal|cli)/|^(client|worker)\\.ts$' },
    },
    {
      name: 'temporal-not-up',
      severity: 'error',
      from: { path: '^temporal/' },
      to: { path: '^cli/|^(client|worker)\\.ts$' },
    },
    {
      name: 'nothing-imports-entry-points',
      severity: 'error',
      from: { pathNot: '^test/' },
      to: { path: '^(client|worker)\\.ts$' },
    },
    {
      name: 'only-tests-import-tests',
      severity: 'error',
      from: { pathNot: '^test/' },
      to: { path: '^test/' },
    },
    {
      name: 'step-registry-is-the-root',
      severity: 'error',
      comment:
        'lib/registry.ts binds every step implementation; nothing in lib/ imports it (the workers ' +
        'and the CLIs do), so the steps below never see each other through it.',
      from: { path: '^lib/', pathNot: '^lib/registry\\.ts$' },
      to: { path: '^lib/registry\\.ts$' },
    },
    {
      name: 'lib-foundations-not-up',
      severity: 'error',
      comment:
        'lib/model, lib/data and lib/monitor are what training, evaluation, plans, reports and serving ' +
        'build on: they import none of those (a shared piece moves down, e.g. lib/model/anomaly-map-params).',
      from: { path: '^lib/(model|data|monitor|backbone|onnx)/' },
      to: { path: '^lib/(train|eval|pipeline|report|serve|infer|models|package)/|^lib/registry\\.ts$' },
    },
    {
      name: 'model-kinds-below-scoring-and-packages',
      severity: 'error',
      comment:
        'A model kind (lib/models/<kind>) builds on the foundations and the backbone; scoring (lib/infer), ' +
        'packages (lib/package) and the steps build on the kinds, never the other way round.',
      from: { path: '^lib/models/' },
      to: { path: '^lib/(train|eval|pipeline|report|serve|infer|package)/|^lib/registry\\.ts$' },
    },
    {
      name: 'scoring-below-steps',
      severity: 'error',
      comment:
        'lib/infer (one scoring interface, one implementation per runtime) is used by steps and serving.',
      from: { path: '^lib/infer/' },
      to: { path: '^lib/(train|eval|pipeline|report|serve|package)/|^lib/registry\\.ts$' },
    },
    {
      name: 'lib-steps-below-report-and-serve',
      severity: 'error',
      comment: 'Training, evaluation and plans do not import reports or the server (those build on them).',
      from: { path: '^lib/(train|eval|pipeline)/' },
      to: { path: '^lib/(report|serve)/' },
    },
    {
      name: 'step-contract-stays-low',
      severity: 'error',
      comment: 'lib/steps/ is the step contract every step imports: it imports only config and util.',
      from: { path: '^lib/steps/' },
      to: { path: '^lib/', pathNot: '^lib/(steps|config|util)/' },
    },
    {
      name: 'config-and-util-at-the-bottom',
      severity: 'error',
      comment: 'lib/util imports no other part of lib/; lib/config only lib/util.',
      from: { path: '^lib/(util|config)/' },
      to: { path: '^lib/', pathNot: '^lib/util/|^lib/config/' },
    },
    {
      name: 'util-below-config',
      severity: 'error',
      from: { path: '^lib/util/' },
      to: { path: '^lib/config/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(runs|\\.state|coverage)/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      mainFields: ['module', 'main', 'types', 'typings'],
    },
    skipAnalysisNotInRules: true,
  },
};
