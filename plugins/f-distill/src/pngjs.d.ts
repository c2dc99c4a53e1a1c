/** The part of pngjs (no bundled types) that the importer and its tests use. */
declare module 'pngjs' {
  export interface PngImage {
    width: number;
    height: number;
    data: Buffer;
  }
  export const PNG: {
    new (options: { width: number; height: number }): PngImage;
    sync: { read(bytes: Buffer): PngImage; write(png: PngImage): Buffer };
  };
}
