// Minimal typing of the parts of adm-zip (no published types) that npz.ts uses.
declare module 'adm-zip' {
  interface ZipEntry {
    entryName: string;
    getData(): Buffer;
  }
  class AdmZip {
    constructor(input?: string | Buffer);
    getEntries(): ZipEntry[];
    addFile(name: string, data: Buffer): void;
    toBuffer(): Buffer;
  }
  export default AdmZip;
}
