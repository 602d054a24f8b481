// The errors of the D-Bus layer, each naming what went wrong.

/** Malformed D-Bus data: from the peer (the connection is then closed), or values that do not fit a signature. */
export class DBusWireError extends Error {
  override name = 'DBusWireError';
  readonly code = 'EBADMSG';
}

/** The SASL handshake failed. */
export class DBusAuthError extends Error {
  override name = 'DBusAuthError';
  readonly code = 'EAUTH';
}

/** An ERROR reply from the peer, or a local failure with a D-Bus error name (no reply, disconnected). */
export class DBusError extends Error {
  override name = 'DBusError';
  constructor(readonly errorName: string, message: string) {
    super(message);
  }
}

export const ErrorNames = {
  failed: 'org.freedesktop.DBus.Error.Failed',
  noReply: 'org.freedesktop.DBus.Error.NoReply',
  disconnected: 'org.freedesktop.DBus.Error.Disconnected',
  unknownObject: 'org.freedesktop.DBus.Error.UnknownObject',
  unknownInterface: 'org.freedesktop.DBus.Error.UnknownInterface',
  unknownMethod: 'org.freedesktop.DBus.Error.UnknownMethod',
  unknownProperty: 'org.freedesktop.DBus.Error.UnknownProperty',
  propertyReadOnly: 'org.freedesktop.DBus.Error.PropertyReadOnly',
  invalidArgs: 'org.freedesktop.DBus.Error.InvalidArgs',
} as const;
