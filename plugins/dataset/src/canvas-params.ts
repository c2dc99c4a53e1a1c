/**
 * The `canvas` parameters of format detection-canvas: their schema (part of the plugin's params) and
 * the defaults filled from it, one definition for the stage and for direct callers.
 */
import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';

const range = (min: number, description: string, def: [number, number]) =>
  Type.Tuple([Type.Integer({ minimum: min }), Type.Integer({ minimum: min })], { description, default: def });

/** detection-canvas parameters (meanings: ./canvas.js's CanvasSpec). */
export const canvasParams = Type.Object(
  {
    items: Type.Union([Type.Literal('idx'), Type.Literal('shapes')], {
      default: 'idx',
      description: "idx: items are the sources' IDX images (e.g. Fashion-MNIST); shapes: procedural shapes",
    }),
    classNames: Type.Optional(
      Type.Array(Type.String(), { description: 'category names (default: 0, 1, ... or the shape names)' }),
    ),
    size: Type.Integer({ default: 96, minimum: 4, description: 'side of the square greyscale canvas, pixels' }),
    objects: range(1, 'objects per canvas [min, max]', [1, 6]),
    scale: range(
      4,
      "longer side of an item's frame in pixels [min, max]; the box is the tight box inside it",
      [12, 40],
    ),
    maxIoU: Type.Number({ default: 0.3, minimum: 0, maximum: 1, description: 'largest IoU between two object boxes' }),
    clutter: Type.Integer({
      default: 2,
      minimum: 0,
      description: 'at most this many fragments of items (not objects) per canvas, away from the object boxes',
    }),
    backgroundNoise: Type.Number({
      default: 8,
      minimum: 0,
      maximum: 255,
      description: 'std (grey levels) of the half-normal per-pixel background',
    }),
    noise: Type.Object(
      {
        kind: Type.Union(
          [Type.Literal('none'), Type.Literal('gaussian'), Type.Literal('speckle'), Type.Literal('rician')],
          { default: 'none' },
        ),
        level: Type.Number({
          default: 0,
          minimum: 0,
          description: 'gaussian / rician: std as a fraction of 255; speckle: std of the multiplicative factor',
        }),
      },
      { additionalProperties: false, default: {}, description: 'image-level noise variant' },
    ),
  },
  { additionalProperties: false, description: 'detection-canvas: the canvas and its objects' },
);

export type CanvasParamsStatic = Static<typeof canvasParams>;

/** The canvas parameters with every missing field set to its schema default. */
export function canvasParamsWithDefaults(given: Partial<CanvasParamsStatic> = {}): CanvasParamsStatic {
  const filled = Value.Default(canvasParams, structuredClone(given)) as CanvasParamsStatic;
  if (!Value.Check(canvasParams, filled)) {
    const first = [...Value.Errors(canvasParams, filled)][0];
    throw new Error(`canvas${first?.path.replaceAll('/', '.') ?? ''}: ${first?.message ?? 'invalid'}`);
  }
  return filled;
}
