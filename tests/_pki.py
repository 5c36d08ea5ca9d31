"""Certificates for the TLS tests (test_tls.py, test_aio_client.py), made with ``cryptography``."""

import datetime
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def certificate(subject, key, issuer, issuer_key, *, ca=False, sans=(), usage=None):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(hours=1))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def write_pem(directory, name, certificate, key):
    cert_path, key_path = directory / f'{name}.pem', directory / f'{name}-key.pem'
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def authority(directory, name):
    """A CA and a client certificate it signed: {'ca', 'client', 'client_key', 'sign'}."""
    key = ec.generate_private_key(ec.SECP256R1())
    ca = certificate(name, key, name, key, ca=True)
    ca_path, _ = write_pem(directory, name, ca, key)

    def sign(subject, sans=(), usage=(ExtendedKeyUsageOID.SERVER_AUTH,)):
        leaf_key = ec.generate_private_key(ec.SECP256R1())
        return write_pem(directory, f'{name}-{subject}',
                      certificate(subject, leaf_key, name, key, sans=sans, usage=list(usage)), leaf_key)
    client, client_key = sign('client', usage=(ExtendedKeyUsageOID.CLIENT_AUTH,))
    return {'ca': ca_path, 'client': client, 'client_key': client_key, 'sign': sign}


def make_pki(directory):
    """Certificates for the TLS tests, written to ``directory``: {'main': the CA the servers use, with
    a server certificate for 127.0.0.1 and localhost ('server', 'server_key') and a client one;
    'other': an unrelated CA with a client certificate of its own}."""
    main, other = authority(directory, 'txaioetcd-test-ca'), authority(directory, 'unrelated-ca')
    # Server and client auth both: etcd 3.5 also uses the server certificate as a client (gateway).
    main['server'], main['server_key'] = main['sign'](
        'etcd', sans=(x509.DNSName('localhost'), x509.IPAddress(ipaddress.ip_address('127.0.0.1'))),
        usage=(ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH))
    return {'main': main, 'other': other}
