/** Workflow bundle entry: every workflow the workers register. */
export { categoryWorkflow } from './category';
export { pipelineWorkflow } from './pipeline';
