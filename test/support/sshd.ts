// The sshd cluster lives in src/local (the local cluster uses it too); tests import it from here.
export * from '../../src/local/sshd.js';
