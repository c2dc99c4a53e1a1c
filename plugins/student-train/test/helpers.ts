/** Shared fixtures of the student-train tests. */

/** Small students by default; the rest of the params get the schema's defaults (core's makeTestContext). */
export function studentParams(params: Record<string, unknown>): Record<string, unknown> {
  return {
    ...params,
    student: {
      arch: 'mlp',
      hidden: [16],
      channels: [4],
      kernel: 3,
      batchNorm: true,
      sharedWidth: 8,
      verticalWidth: 4,
      selfPaced: true,
      ...(params.student as object),
    },
  };
}
