"""Intake: bytes, a path or an upload -> :class:`~medapp.intake.medical_image.MedicalImage`, or a typed refusal.

Format sniffing, DICOM decoding, the size limits checked before decoding, and patient privacy (safe metadata,
de-identification, the PHI-free audit log). Nothing here knows about models.
"""
