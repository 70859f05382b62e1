/**
 * The pretrained backbone a PatchCore config names, as the AppendBackbone the feature graph takes:
 * loads (converting on first use) the EfficientNet-Lite weights of lib/backbone and maps the config's
 * strides to the backbone's stages.
 */
import { appendBackbone, type BackboneVariant, type BackboneWeights, loadBackbone } from '../../backbone';
import type { PatchcoreConfig } from '../../config/schema';
import type { JsonValue } from '../../steps/contracts';
import { UserError } from '../../util/errors';
import type { AppendBackbone } from './feature-graph';

export interface ResolvedBackbone {
  append: AppendBackbone;
  name: string;
  /** For metadata: licence, source package, sha256 of the weights, how they were loaded. */
  source: Record<string, JsonValue>;
}

export function backboneFromWeights(weights: BackboneWeights, name: string): ResolvedBackbone {
  const append: AppendBackbone = (g, input, strides) => {
    const stages = strides.map((s) => {
      const st = weights.stages.find((x) => x.stride === s);
      if (!st)
        throw new UserError(
          'INVALID_CONFIG',
          `model.patchcore.strides: ${name} has no stage of stride ${s} (strides: ${weights.stages.map((x) => x.stride).join(', ')})`,
        );
      return st.stage;
    });
    return appendBackbone(g, input, weights, { stages }).outputs.map((o) => ({
      name: o.name,
      stride: o.stride,
      channels: o.channels,
    }));
  };
  const { text: _licenceText, ...licence } = weights.info.license;
  return {
    append,
    name,
    source: {
      architecture: weights.info.architecture,
      parameters: weights.info.parameters,
      license: licence,
      loadedFrom: weights.info.source,
    },
  };
}

export async function resolveBackbone(
  cfg: PatchcoreConfig,
  log?: (line: string) => void,
): Promise<ResolvedBackbone> {
  const variant = cfg.backbone.replace('efficientnet-', '') as BackboneVariant;
  return backboneFromWeights(await loadBackbone({ variant, log }), cfg.backbone);
}
