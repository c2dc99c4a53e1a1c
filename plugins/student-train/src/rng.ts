/** The project's seeded generator (tools/runtime/src/rng.ts), re-exported for this package's modules. */
export { Rng } from '@distillery/runtime/rng';
