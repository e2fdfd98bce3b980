"""medapp inside the hospital's workflow: studies read from a PACS over DICOMweb, results written back as DICOM."""
