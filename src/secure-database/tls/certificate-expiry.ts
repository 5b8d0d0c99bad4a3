import type { Socket } from 'node:net';
import { type DetailedPeerCertificate, TLSSocket } from 'node:tls';
import type pg from 'pg';

/** One certificate of the chain a TLS connection presented (as Node resolved it, up to the trust anchor when verified). */
export interface PresentedCertificate {
  /** CN, else the whole subject: a name, never key material. */
  subject: string;
  issuer: string;
  validFrom: Date;
  validTo: Date;
  /** Its own issuer: a root (a trust anchor when the chain was verified). */
  selfSigned: boolean;
  /** e.g. ecdsa-with-SHA256, sha256WithRSAEncryption, or the OID when unknown. */
  signatureAlgorithm: string;
  /** e.g. `EC P-256`, `RSA 2048`. */
  key: string;
  /** RSA modulus size, when RSA. */
  rsaBits?: number;
}

/** The first certificate of the chain to expire: when it does, new connections fail verification. */
export interface CertificateExpiry {
  subject: string;
  validTo: Date;
}

/** Inside this many days the startup log warns and the doctor reports `warn`. */
export const CERTIFICATE_EXPIRY_WARNING_DAYS = 30;

const DAY_MS = 86_400_000;

function socketOf(client: pg.ClientBase): Socket | undefined {
  return (client as unknown as { connection?: { stream?: Socket } }).connection?.stream;
}

const name = (fields: Record<string, string | string[] | undefined> | undefined): string => {
  if (!fields) return 'unknown';
  const cn = fields.CN;
  if (cn) return `CN=${Array.isArray(cn) ? cn.join('+') : cn}`;
  return (
    Object.entries(fields)
      .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join('+') : v}`)
      .join(', ') || 'unknown'
  );
};

/** The chain of a TLS socket, leaf first; empty when the socket is not TLS or presented nothing. */
export function presentedChain(socket: Socket | undefined): PresentedCertificate[] {
  if (!(socket instanceof TLSSocket)) return [];
  let cert: DetailedPeerCertificate | undefined = socket.getPeerCertificate(true);
  const chain: PresentedCertificate[] = [];
  const seen = new Set<string>();
  while (cert && cert.raw && !seen.has(cert.fingerprint256)) {
    seen.add(cert.fingerprint256);
    // Node links the issuer only when it found it (a verified chain); otherwise compare the names.
    const selfSigned: boolean = cert.issuerCertificate
      ? cert.issuerCertificate.fingerprint256 === cert.fingerprint256
      : JSON.stringify(cert.issuer) === JSON.stringify(cert.subject);
    const { bits, modulus, nistCurve, asn1Curve } = cert as { bits?: number; modulus?: string; nistCurve?: string; asn1Curve?: string };
    const curve = nistCurve ?? asn1Curve;
    chain.push({
      subject: name(cert.subject as unknown as Record<string, string>),
      issuer: name(cert.issuer as unknown as Record<string, string>),
      validFrom: new Date(cert.valid_from),
      validTo: new Date(cert.valid_to),
      selfSigned,
      signatureAlgorithm: signatureAlgorithmOf(cert.raw),
      key: curve ? `EC ${curve}` : modulus ? `RSA ${bits}` : keyTypeOf(cert.raw),
      rsaBits: modulus ? bits : undefined,
    });
    cert = selfSigned || !cert.issuerCertificate ? undefined : cert.issuerCertificate;
  }
  return chain;
}

/** The chain's first certificate to expire, for a connection over TLS. */
export function certificateExpiryOf(client: pg.ClientBase): CertificateExpiry | undefined {
  return earliestExpiry(presentedChain(socketOf(client)));
}

export function earliestExpiry(chain: PresentedCertificate[]): CertificateExpiry | undefined {
  const first = chain.reduce<PresentedCertificate | undefined>((a, c) => (!a || c.validTo < a.validTo ? c : a), undefined);
  return first && { subject: first.subject, validTo: first.validTo };
}

/** Whole days until `validTo` (negative once expired). */
export function daysLeft(validTo: Date, now = Date.now()): number {
  return Math.floor((validTo.getTime() - now) / DAY_MS);
}

/** The startup warning when the certificate expires within CERTIFICATE_EXPIRY_WARNING_DAYS (or has expired). */
export function certificateExpiryWarning(expiry: CertificateExpiry | undefined, now = Date.now()): string | undefined {
  if (!expiry) return undefined;
  const left = daysLeft(expiry.validTo, now);
  const when = expiry.validTo.toISOString();
  if (expiry.validTo.getTime() <= now) {
    return `The server's TLS certificate (${expiry.subject}) EXPIRED on ${when}: renew it now; a verifying sslmode refuses it`;
  }
  if (left >= CERTIFICATE_EXPIRY_WARNING_DAYS) return undefined;
  return (
    `The server's TLS certificate (${expiry.subject}) expires in ${left} day${left === 1 ? '' : 's'} (${when}): ` +
    'renew it before then, or every new connection will fail verification'
  );
}

// --- the signature algorithm, read from the certificate's DER (Node 20 has no X509Certificate#signatureAlgorithm) ---

const SIGNATURE_ALGORITHMS: Record<string, string> = {
  '1.2.840.113549.1.1.4': 'md5WithRSAEncryption',
  '1.2.840.113549.1.1.5': 'sha1WithRSAEncryption',
  '1.2.840.113549.1.1.10': 'RSASSA-PSS',
  '1.2.840.113549.1.1.11': 'sha256WithRSAEncryption',
  '1.2.840.113549.1.1.12': 'sha384WithRSAEncryption',
  '1.2.840.113549.1.1.13': 'sha512WithRSAEncryption',
  '1.2.840.10045.4.1': 'ecdsa-with-SHA1',
  '1.2.840.10045.4.3.2': 'ecdsa-with-SHA256',
  '1.2.840.10045.4.3.3': 'ecdsa-with-SHA384',
  '1.2.840.10045.4.3.4': 'ecdsa-with-SHA512',
  '1.2.840.10040.4.3': 'dsa-with-SHA1',
  '2.16.840.1.101.3.4.3.2': 'dsa-with-SHA256',
  '1.3.101.112': 'Ed25519',
  '1.3.101.113': 'Ed448',
};

const KEY_TYPES: Record<string, string> = {
  '1.2.840.113549.1.1.1': 'RSA',
  '1.2.840.10045.2.1': 'EC',
  '1.3.101.112': 'Ed25519',
  '1.3.101.113': 'Ed448',
  '1.2.840.10040.4.1': 'DSA',
};

/** A signature made with MD5 or SHA-1: forgeable (collisions), refused by current browsers and TLS stacks. */
export function isWeakSignature(algorithm: string): boolean {
  return /md5|sha1/i.test(algorithm);
}

interface Tlv {
  tag: number;
  /** Offset of the content. */
  start: number;
  /** Offset just past the content. */
  end: number;
}

function readTlv(der: Buffer, offset: number): Tlv {
  const tag = der[offset];
  let length = der[offset + 1];
  let start = offset + 2;
  if (length & 0x80) {
    const bytes = length & 0x7f;
    length = 0;
    for (let i = 0; i < bytes; i++) length = length * 256 + der[start + i];
    start += bytes;
  }
  if (tag === undefined || start + length > der.length) throw new RangeError('truncated DER');
  return { tag, start, end: start + length };
}

function oidAt(der: Buffer, tlv: Tlv): string {
  if (tlv.tag !== 0x06) throw new RangeError('not an OID');
  const parts: number[] = [Math.floor(der[tlv.start] / 40), der[tlv.start] % 40];
  let value = 0;
  for (let i = tlv.start + 1; i < tlv.end; i++) {
    value = value * 128 + (der[i] & 0x7f);
    if (!(der[i] & 0x80)) {
      parts.push(value);
      value = 0;
    }
  }
  return parts.join('.');
}

/** Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm AlgorithmIdentifier, signature } */
export function signatureAlgorithmOf(der: Buffer): string {
  try {
    const certificate = readTlv(der, 0);
    const tbs = readTlv(der, certificate.start);
    const algorithm = readTlv(der, tbs.end);
    const oid = oidAt(der, readTlv(der, algorithm.start));
    return SIGNATURE_ALGORITHMS[oid] ?? oid;
  } catch {
    return 'unknown';
  }
}

/** The subject public key's algorithm: tbsCertificate's SubjectPublicKeyInfo (after version, serial, signature, issuer, validity, subject). */
function keyTypeOf(der: Buffer): string {
  try {
    const certificate = readTlv(der, 0);
    const tbs = readTlv(der, certificate.start);
    let field = readTlv(der, tbs.start);
    if (field.tag === 0xa0) field = readTlv(der, field.end); // explicit version
    for (let i = 0; i < 4; i++) field = readTlv(der, field.end); // serial → signature → issuer → validity → subject
    const spki = readTlv(der, field.end);
    const algorithm = readTlv(der, spki.start);
    const oid = oidAt(der, readTlv(der, algorithm.start));
    return KEY_TYPES[oid] ?? oid;
  } catch {
    return 'unknown';
  }
}
