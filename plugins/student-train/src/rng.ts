/** The project's seeded generator (tools/core/src/util/rng.ts), re-exported for this package's modules. */
export { Rng } from '@distillery/runtime/rng';
