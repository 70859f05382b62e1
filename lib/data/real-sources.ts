/**
 * Where the real-photo benchmark (`dataset real`) takes its photographs from: texture photographs
 * shipped by the Debian package `ufoai-textures` (UFO: Alien Invasion), read straight out of its
 * installed archive /usr/share/games/ufoai/base/0textures.pk3 (a zip), with each file's licence
 * looked up in the package's machine-readable copyright file.
 *
 * A `PhotoSource` is injectable: `dirSource` reads the same relative paths from a plain folder
 * (an extracted archive, or the tiny fixtures the tests make).
 */
import { execFile } from 'node:child_process';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { UserError } from '../util/errors';
import { readZipEntries } from './zip';

export interface RealPhotoSpec {
  /** Path inside the source (for ufoai-textures: below `textures/` in the archive). */
  file: string;
  /** Usable part of the photo [x, y, w, h] (default: all of it). */
  region?: [number, number, number, number];
}

export interface RealCategorySpec {
  description: string;
  photos: RealPhotoSpec[];
  /** Source pixels per output pixel (crop side = size * scale, at most what the split region allows). */
  scale: number;
  /** Also rotate crops by 90/180/270 degrees (isotropic textures); otherwise flips only. */
  rotate: boolean;
}

export interface PhotoInfo {
  package: string;
  version: string;
  /** Where the file is on this machine (archive path + entry, or a file path). */
  path: string;
  licence: string;
  copyright: string;
}

export interface PhotoSource {
  /** Reads the files; throws a UserError naming the missing package or file. */
  read(files: string[]): Promise<Map<string, Buffer>>;
  describe(file: string): PhotoInfo;
}

const UFOAI = 'textures of the Debian package ufoai-textures (UFO: Alien Invasion)';

/**
 * The benchmark's categories. Train crops come from the upper half of every photo's region and test
 * crops (good and defective) from the lower half, so no test image shows texture seen in training
 * (several files are recoloured variants of one photograph: the fixed split keeps them apart too).
 */
export const REAL_CATEGORIES: Record<string, RealCategorySpec> = {
  concrete: {
    description: `bare concrete walls and floors (${UFOAI})`,
    photos: [
      { file: 'tex_buildings/concrete003.png' },
      { file: 'tex_buildings/concrete004.png' },
      { file: 'tex_buildings/concrete024.png' },
      { file: 'tex_buildings/floor003.png' },
    ],
    scale: 1,
    rotate: true,
  },
  metal: {
    description: `weathered, slightly rusty steel plate (${UFOAI})`,
    photos: [
      { file: 'tex_material/metall014.png' },
      { file: 'tex_material/metall017.png' },
      { file: 'tex_material/metall018.png' },
      { file: 'tex_material/metall019.png' },
    ],
    scale: 1,
    rotate: true,
  },
  grass: {
    description: `tall green grass, top view (${UFOAI})`,
    photos: [
      { file: 'tex_nature/grass_tall_green_a.jpg' },
      { file: 'tex_nature/grass_tall_green_b.jpg' },
      { file: 'tex_nature/grass_tall_green_c.jpg' },
    ],
    scale: 1,
    rotate: true,
  },
  rock: {
    description: `grey-green rock faces, 1024 px photos (${UFOAI})`,
    photos: [
      { file: 'tex_nature/rock009.png' },
      { file: 'tex_nature/rock010.png' },
      { file: 'tex_nature/rock011.png' },
      { file: 'tex_nature/pjrock21.png' },
    ],
    scale: 1.5,
    rotate: true,
  },
  brick: {
    description: `dark red brick wall, rows kept horizontal (${UFOAI})`,
    photos: [{ file: 'tex_buildings/wall043.png' }, { file: 'tex_buildings/wall044.png' }],
    scale: 1,
    rotate: false,
  },
  wood: {
    description: `wood: weathered grey planks and dark polished grain, grain kept vertical (${UFOAI})`,
    photos: [{ file: 'tex_material/wood003.png' }, { file: 'tex_buildings/wizwood1_2.jpg' }],
    scale: 1,
    rotate: false,
  },
  gravel: {
    description: `railway ballast gravel (${UFOAI})`,
    photos: [{ file: 'tex_nature/railway.png' }],
    scale: 1,
    rotate: true,
  },
  soil: {
    description: `bare dry soil (${UFOAI})`,
    photos: [{ file: 'tex_nature/dirt002.png' }, { file: 'tex_nature/dirt003.png' }],
    scale: 1,
    rotate: true,
  },
};

export const UFOAI_PACKAGE = 'ufoai-textures';
export const UFOAI_ARCHIVE = 'usr/share/games/ufoai/base/0textures.pk3';
export const UFOAI_COPYRIGHT = `usr/share/doc/${UFOAI_PACKAGE}/copyright`;
export const INSTALL_HINT = `install it with: sudo apt-get install ${UFOAI_PACKAGE} (or run scripts/install-real-sources.sh)`;

/** Licence and copyright holders per file from a DEP-5 copyright file (`Files:` stanzas). */
export function parseDep5(text: string): Map<string, { licence: string; copyright: string }> {
  const out = new Map<string, { licence: string; copyright: string }>();
  for (const stanza of text.split(/\n\s*\n/)) {
    if (!stanza.trimStart().startsWith('Files:')) continue;
    const files: string[] = [];
    const holders: string[] = [];
    let licence = '';
    let field = '';
    for (const line of stanza.split('\n')) {
      const m = /^([A-Za-z-]+):\s*(.*)$/.exec(line);
      if (m) {
        field = m[1];
        if (field === 'Files') files.push(...m[2].split(/\s+/).filter(Boolean));
        else if (field === 'Copyright' && m[2]) holders.push(m[2].trim());
        else if (field === 'License') licence = m[2].trim();
      } else if (/^\s/.test(line)) {
        if (field === 'Files') files.push(...line.trim().split(/\s+/).filter(Boolean));
        else if (field === 'Copyright' && line.trim()) holders.push(line.trim());
      }
    }
    for (const f of files) out.set(f, { licence, copyright: holders.join('; ') });
  }
  return out;
}

async function packageVersion(pkg: string): Promise<string> {
  try {
    const { stdout } = await promisify(execFile)('dpkg-query', ['-W', '--showformat=$' + '{Version}', pkg]);
    return stdout.trim() || 'unknown';
  } catch {
    return 'unknown';
  }
}

const exists = (p: string) =>
  stat(p).then(
    () => true,
    () => false,
  );

/** The installed Debian package ufoai-textures (`root` prefixes the system paths; default `/`). */
export async function ufoaiSource(root = '/'): Promise<PhotoSource> {
  const archive = join(root, UFOAI_ARCHIVE);
  if (!(await exists(archive)))
    throw new UserError(
      'INVALID_ARGUMENT',
      `the real-photo benchmark needs the Debian package ${UFOAI_PACKAGE} (${archive} not found); ${INSTALL_HINT}`,
    );
  const version = await packageVersion(UFOAI_PACKAGE);
  const copyrightPath = join(root, UFOAI_COPYRIGHT);
  const licences = (await exists(copyrightPath))
    ? parseDep5(await readFile(copyrightPath, 'utf8'))
    : new Map<string, { licence: string; copyright: string }>();
  const fallback = licences.get('*') ?? { licence: 'GPL-2+', copyright: 'The UFO:AI Team' };
  return {
    async read(files) {
      const got = await readZipEntries(
        archive,
        files.map((f) => `textures/${f}`),
      );
      const out = new Map<string, Buffer>();
      for (const f of files) {
        const b = got.get(`textures/${f}`);
        if (!b)
          throw new UserError(
            'INVALID_ARGUMENT',
            `textures/${f} is not in ${archive} (${UFOAI_PACKAGE} ${version}); expected version 2.5-2`,
          );
        out.set(f, b);
      }
      return out;
    },
    describe(file) {
      const l = licences.get(`base/textures/${file}`) ?? fallback;
      return {
        package: UFOAI_PACKAGE,
        version,
        path: `${archive}:textures/${file}`,
        licence: l.licence,
        copyright: l.copyright,
      };
    },
  };
}

/** Plain files below `dir` (an extracted archive, or test fixtures). */
export function dirSource(dir: string, info: Partial<PhotoInfo> = {}): PhotoSource {
  return {
    async read(files) {
      const out = new Map<string, Buffer>();
      for (const f of files) {
        try {
          out.set(f, await readFile(join(dir, f)));
        } catch (err) {
          throw new UserError('INVALID_ARGUMENT', `source photo ${join(dir, f)} cannot be read`, {
            cause: err,
          });
        }
      }
      return out;
    },
    describe(file) {
      return {
        package: info.package ?? '(local folder)',
        version: info.version ?? '-',
        path: join(dir, file),
        licence: info.licence ?? 'unknown',
        copyright: info.copyright ?? 'unknown',
      };
    },
  };
}
